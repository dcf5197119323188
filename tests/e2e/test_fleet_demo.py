"""`stoker fleet demo` at a small size, on the embedded default: the data job writes one CSV
per customer, one training job of two instances (ShardedByS3Key) writes one model per
customer through its checkpoint folder, the endpoint serves them behind a bearer token, and
boto3's runtime client queries every one of them."""

from __future__ import annotations

import tarfile
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stoker.app.fleet_demo import ENDPOINT_NAME, FleetDemoPlan, Phase, run_fleet_demo
from stoker.cli.main import app
from stoker.training_scripts import energy_data

pytestmark = pytest.mark.slow

TARGET = "X-Amzn-SageMaker-Target-Model"


def summary_value(output: str, label: str) -> str:
    """The value cell of the summary table's row `label`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0] == label:  # (what, value)
            return cells[1]
    raise AssertionError(f"no row {label!r} in the summary:\n{output}")


def test_the_fleet_demo_command_trains_serves_and_queries_every_model(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        [
            *("fleet", "demo", "--customers", "20", "--workers", "2", "--rows", "120"),
            *("--requests", "60", "--data-dir", str(data)),
        ],
    )
    assert result.exit_code == 0, result.output
    models = sorted(p.name for p in (data / "models").glob("*.tar.gz"))
    assert models == sorted(f"{c}.tar.gz" for c in range(20))
    with tarfile.open(data / "models" / "7.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["code/inference.py", "model.json"]
    for row in (
        "customers written",
        "models trained per second",
        "cache hit rate",
        "hot latency p50 / p99",
        "cold latency p50 / p99",
    ):
        assert row in result.output
    assert summary_value(result.output, "models trained") == "20"
    assert summary_value(result.output, "models failed") == "0"
    assert summary_value(result.output, "request errors") == "0"
    assert summary_value(result.output, "models answered") == "20"
    assert float(summary_value(result.output, "models trained per second")) > 0
    assert "bearer token required" in result.output


async def test_the_endpoint_needs_the_demo_token_and_every_model_answers(tmp_path: Path) -> None:
    """Secure by default: without the token the endpoint refuses (401); boto3's calls carry
    it. Every model is queried; each model's first request is cold; the endpoint's own
    cache counters account for every request."""
    plan = FleetDemoPlan(customers=6, workers=2, rows_per_customer=80, requests=30, seed=3)
    phases: list[Phase] = []
    checked: dict[str, int] = {}

    async def check_endpoint(url: str, token: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            path = f"/endpoints/{ENDPOINT_NAME}/invocations"
            body = b'{"period": 3}'
            refused = await http.post(path, content=body, headers={TARGET: "0.tar.gz"})
            checked["without"] = refused.status_code
            bad = {TARGET: "0.tar.gz", "Authorization": "Bearer not-the-token"}
            checked["wrong"] = (await http.post(path, content=body, headers=bad)).status_code

    def progress(phase: Phase, _done: int, _total: int | None) -> None:
        if not phases or phases[-1] is not phase:
            phases.append(phase)

    result = await run_fleet_demo(tmp_path, plan, progress, on_endpoint=check_endpoint)
    assert checked == {"without": 401, "wrong": 401}
    assert phases == [Phase.DATA, Phase.TRAIN, Phase.SERVE, Phase.QUERY]
    assert result.data is not None
    assert result.data.status == "Completed"
    assert result.training is not None
    assert result.training.status == "Completed", result.training.failure_reason
    assert result.customers_written == 6
    assert result.models_trained == 6
    assert result.failed_models == {}
    assert result.models_per_s is not None
    assert result.models_per_s > 0
    traffic = result.traffic
    assert traffic is not None
    assert not traffic.errors, traffic.first_errors
    assert traffic.models_answered == 6
    assert len(traffic.hot_s) + len(traffic.cold_s) == 6 + 30
    assert len(traffic.cold_s) >= 6  # each model's first request waited for its load
    assert sum(result.lookups.values()) == 6 + 30
    assert result.hit_rate is not None
    assert 0 < result.hit_rate < 1
    assert result.succeeded


async def test_a_given_data_set_is_split_its_bad_rows_and_failed_model_reported(
    tmp_path: Path,
) -> None:
    """With a data set of its own: the bad rows are skipped and named in the data job's
    report; a customer left with too few rows to fit is a failed model named in the result,
    and the others are trained, served and answer."""
    frame = energy_data.generate(
        customers=3,
        rows_per_customer=80,
        start=datetime(2021, 1, 1),
        end=datetime(2023, 1, 1),
        seed=5,
    )
    frame["customer_id"] = frame.customer_id.map({0: "north", 1: "south", 2: "tiny"})
    keep = (frame.customer_id != "tiny") | (frame.groupby("customer_id").cumcount() == 0)
    raw = tmp_path / "raw"
    raw.mkdir()
    text = frame[keep].to_csv(index=False)
    text += "tiny,not a time,5\nsouth,2022-03-01 00:00:00,-4\n"  # two bad rows
    (raw / "readings.csv").write_text(text)

    plan = FleetDemoPlan(workers=2, requests=10, input_dir=raw)
    result = await run_fleet_demo(tmp_path / "run", plan, lambda *_: None)

    assert result.customers_written == 3
    assert result.rows_skipped == 2
    reasons = sorted(str(bad["reason"]) for bad in result.bad_rows)
    assert "consumption -4.0 is outside 0-1000" in reasons[0]
    assert "timestamp 'not a time'" in reasons[1]
    assert result.training is not None
    assert result.training.status == "Completed", result.training.failure_reason
    assert result.models_trained == 2
    assert list(result.failed_models) == ["tiny"]
    assert result.traffic is not None
    assert result.traffic.models_answered == 2
    assert not result.traffic.errors
    assert result.succeeded
