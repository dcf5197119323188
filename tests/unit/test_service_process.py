"""How a service process runs: a garbage collector tuned for many small, mostly
short-lived objects."""

from __future__ import annotations

import gc

import pytest

from stoker.app.process import run_service_process, tune_gc
from stoker.core.errors import ConfigurationError
from stoker.settings import Settings, load_settings


async def _answer() -> int:
    return 42


def test_a_bad_threshold_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_GC_THRESHOLD", "-1")
    with pytest.raises(ConfigurationError, match="STOKER_GC_THRESHOLD"):
        load_settings()


@pytest.mark.usefixtures("collector_restored")
def test_a_service_process_collects_the_young_generation_less_often() -> None:
    """The youngest generation's threshold is raised, the older ones keep Python's
    proportions, and what was alive at start-up is frozen out of later collections."""
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    assert run_service_process(_answer(), Settings(gc_threshold=50_000)) == 42
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_restored")
def test_a_zero_threshold_leaves_the_collector_alone() -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
