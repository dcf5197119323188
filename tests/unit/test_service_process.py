"""How a service process runs: uvloop by default, the standard loop on request, and a
garbage collector tuned for many small, mostly short-lived objects."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvloop

from stoker.core.errors import ConfigurationError
from stoker.process import run_event_loop, run_service_process, tune_gc
from stoker.settings import Settings, load_settings


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The collector's settings as they were, for the tests after these."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_uvloop_runs_the_services_by_default() -> None:
    assert Settings().event_loop == "uvloop"
    assert run_event_loop(_loop_type(), "uvloop") is uvloop.Loop


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_EVENT_LOOP", "asyncio")
    kind = Settings().event_loop
    assert kind == "asyncio"
    assert not issubclass(run_event_loop(_loop_type(), kind), uvloop.Loop)


@pytest.mark.parametrize(
    ("name", "value"), [("STOKER_EVENT_LOOP", "trio"), ("STOKER_GC_THRESHOLD", "-1")]
)
def test_bad_process_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


@pytest.mark.usefixtures("collector_restored")
def test_a_service_process_collects_the_young_generation_less_often() -> None:
    """The youngest generation's threshold is raised, the older ones keep Python's
    proportions, and what was alive at start-up is frozen out of later collections."""
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    settings = Settings(gc_threshold=50_000, event_loop="asyncio")
    assert run_service_process(_loop_type(), settings) is not uvloop.Loop
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_restored")
def test_a_zero_threshold_leaves_the_collector_alone() -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
