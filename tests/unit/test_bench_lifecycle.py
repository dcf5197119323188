"""The lifecycle benchmark's pure pieces: percentiles, per-job times, rates, virtual time."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.job import JobStatus, Transition
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.faults import FaultConfig

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    # bench/ holds scripts, not a package: load the module from its file.
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stats = _load("_lifecycle_stats")
backends = _load("_lifecycle_backend")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _line(version: int, status: JobStatus, at_s: float) -> Transition:
    return Transition(
        job_id="j",
        version=version,
        from_status=None,
        to_status=status,
        at=T0 + timedelta(seconds=at_s),
    )


def test_percentile_uses_the_nearest_rank_so_it_is_a_measured_value() -> None:
    """p50 of 1..100 is 50, p99 is 99, p100 is the maximum; no interpolation."""
    values = [float(v) for v in range(100, 0, -1)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([0.2, 0.1, 0.3], 50) == 0.2


def test_percentile_rejects_empty_input_and_out_of_range_q() -> None:
    """No samples, or q outside 0..100, is an error rather than a made-up number."""
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        stats.percentile([1.0], 101)


def test_summarize_ms_reports_milliseconds_of_second_latencies() -> None:
    """Latencies in seconds come out as p50 / p99 / max / mean in milliseconds."""
    summary = stats.summarize_ms([0.010] * 98 + [0.050, 0.500])
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(10.0)
    assert summary.p99_ms == pytest.approx(50.0)
    assert summary.max_ms == pytest.approx(500.0)
    assert summary.mean_ms == pytest.approx((0.98 + 0.05 + 0.5) / 100 * 1000)


def test_job_times_take_new_first_launch_and_terminal_from_history() -> None:
    """Submit-to-launch is New at -> first Launched at; a retried launch does not move it."""
    history = [
        _line(1, JobStatus.NEW, 0.0),
        _line(2, JobStatus.LAUNCHING, 0.01),
        _line(3, JobStatus.LAUNCHED, 0.03),
        _line(4, JobStatus.RETRY_SCHEDULED, 1.0),
        _line(5, JobStatus.LAUNCHING, 2.0),
        _line(6, JobStatus.LAUNCHED, 2.5),
        _line(7, JobStatus.COMPLETED, 3.0),
    ]
    times = stats.job_times(history)
    assert times.submit_to_launch_s == pytest.approx(0.03)
    assert times.ended_at == T0 + timedelta(seconds=3)
    assert stats.job_times([_line(1, JobStatus.NEW, 0.0)]).submit_to_launch_s is None


def test_spread_of_repeated_runs_is_a_measured_median_and_the_range() -> None:
    """Five runs: the middle one; four runs: the lower middle (a value that was measured,
    not an average of two); one run is its own median."""
    assert stats.spread([900, 1100, 700, 1000, 950]) == stats.Spread(950, 700, 1100)
    assert stats.spread([900, 1100, 700, 1000]) == stats.Spread(900, 700, 1100)
    assert stats.spread([42.0]) == stats.Spread(42.0, 42.0, 42.0)
    with pytest.raises(ValueError, match="no values"):
        stats.spread([])


def test_end_to_end_rate_runs_from_first_new_to_last_terminal() -> None:
    """Four jobs from t=0 to the last end at t=2 s: 2 s and 2 jobs/s."""
    times = [
        stats.job_times(
            [_line(1, JobStatus.NEW, n * 0.5), _line(2, JobStatus.COMPLETED, 1 + n / 3)]
        )
        for n in range(4)
    ]
    seconds, rate = stats.end_to_end_rate(times)
    assert seconds == pytest.approx(2.0)
    assert rate == pytest.approx(2.0)


def test_stage_percentiles_split_each_jobs_time_by_stage() -> None:
    """100 jobs: New -> Launched 10 ms (one straggler 400 ms; one with a retried create,
    Launching in between, 50 ms), Launched -> end 1 s; p50 and p99 by nearest rank, and a
    job that never launched counts only where it has both ends."""

    def job(launch_s: float, *, retried: bool = False) -> object:
        lines = [_line(1, JobStatus.NEW, 0.0)]
        if retried:
            lines.append(_line(2, JobStatus.LAUNCHING, launch_s / 2))
        return stats.job_times(
            [
                *lines,
                _line(len(lines) + 1, JobStatus.LAUNCHED, launch_s),
                _line(len(lines) + 2, JobStatus.COMPLETED, launch_s + 1),
            ]
        )

    times = [job(0.01)] * 98 + [job(0.05, retried=True), job(0.4)]
    times.append(stats.job_times([_line(1, JobStatus.NEW, 0.0), _line(2, JobStatus.STOPPED, 1)]))
    stages = stats.stage_percentiles_ms(times)
    assert list(stages) == ["New->Launched", "Launched->end"]
    assert stages["New->Launched"] == pytest.approx((10.0, 50.0))
    assert stages["Launched->end"] == pytest.approx((1000.0, 1000.0))
    assert stats.stage_percentiles_ms([stats.job_times([_line(1, JobStatus.NEW, 0.0)])]) == {}


async def test_virtual_clock_lets_concurrent_sleepers_wait_side_by_side() -> None:
    """Two tasks sleeping 600 s at once both wake at t=600 (not 1,200), in wake-up order;
    a tiny positive wait still moves time, so a token bucket cannot spin on rounding."""
    clock = stats.VirtualClock(T0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def main() -> float:
        await asyncio.gather(sleeper("a", 600), sleeper("b", 600), sleeper("c", 30))
        before = clock.monotonic()
        await clock.sleep(1e-18)
        return clock.monotonic() - before

    step = await clock.run(main())
    assert woke == [("c", 30.0), ("a", 600.0), ("b", 600.0)]
    assert clock.now() > T0 + timedelta(seconds=600)
    assert step == pytest.approx(stats.MIN_STEP_S)


async def _ticks_during_a_three_page_listing(*, yield_per_call: bool) -> tuple[int, int]:
    """(jobs listed, turns another task got) while 250 jobs are listed, 100 a page."""
    engine = SimulatedSageMaker(FaultConfig(startup_s=0))
    for n in range(250):
        engine.create_training_job(
            {
                "TrainingJobName": f"job-{n:03d}",
                "RoleArn": "arn:aws:iam::000000000000:role/x",
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            }
        )
    client = backends.EngineClient(engine, yield_per_call=yield_per_call)
    backend = SageMakerBackend(client=client)
    ticks = 0
    listing = asyncio.ensure_future(backend.list_training_jobs())
    while not listing.done():
        ticks += 1
        await asyncio.sleep(0)
    return len(listing.result()), ticks


async def test_the_in_process_client_lets_other_tasks_run_between_calls() -> None:
    """As a call on a socket does: a listing of three pages is three turns of the loop, not
    one piece that holds up every other task (off on a virtual clock, part (b))."""
    listed, ticks = await _ticks_during_a_three_page_listing(yield_per_call=True)
    assert listed == 250
    assert ticks >= 3
    listed, ticks = await _ticks_during_a_three_page_listing(yield_per_call=False)
    assert listed == 250
    assert ticks == 1  # the listing ran in one piece on the loop's first turn
