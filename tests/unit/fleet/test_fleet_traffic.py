"""The fleet demo's traffic plan: every model at least once, Zipf draws on top (seeded, the
most popular model drawn most), and nearest-rank percentiles."""

from __future__ import annotations

from collections import Counter

import pytest

from stoker.app.fleet_demo import FleetDemoPlan
from stoker.app.fleet_traffic import percentile, request_plan, zipf_draws

MODELS = [f"{n}.tar.gz" for n in range(50)]


def test_zipf_draws_are_seeded_and_skewed_to_a_few_models() -> None:
    draws = zipf_draws(MODELS, 5000, s=1.1, seed=3)
    assert draws == zipf_draws(MODELS, 5000, s=1.1, seed=3)
    assert draws != zipf_draws(MODELS, 5000, s=1.1, seed=4)
    counts = Counter(draws).most_common()
    # Zipf(1.1) over 50: the top model takes about a fifth, the top five about half.
    assert 0.15 < counts[0][1] / len(draws) < 0.3
    assert sum(count for _, count in counts[:5]) / len(draws) > 0.4
    # Popularity is a shuffle of the names, not their order.
    assert counts[0][0] != MODELS[0] or counts[1][0] != MODELS[1]


def test_the_plan_queries_every_model_then_adds_the_zipf_requests() -> None:
    plan = request_plan(MODELS, 200, s=1.1, seed=0)
    assert len(plan) == len(MODELS) + 200
    assert set(plan) == set(MODELS)
    assert request_plan(MODELS, 0, s=1.1, seed=0) != MODELS  # shuffled
    assert sorted(request_plan(MODELS, 0, s=1.1, seed=0)) == sorted(MODELS)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customers": 0}, "customers"),
        ({"workers": 0}, "workers"),
        ({"rows_per_customer": 3}, "rows_per_customer"),
        ({"requests": -1}, "requests"),
        ({"zipf_s": 0.0}, "zipf_s"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_a_bad_plan_names_its_field(change: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FleetDemoPlan(**change).check()  # type: ignore[arg-type]
