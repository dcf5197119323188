"""The scheduler over the pipeline store: a tick starts one execution, two schedulers on one
SQLite file start one execution per tick, a tick during a running execution is skipped,
pause and resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.core.clock import FakeClock
from stoker.core.pipelines.records import PipelineNotFound, ScheduleConflict
from stoker.core.pipelines.schedules import tick_execution_id
from stoker.core.pipelines.state import ExecutionStatus
from stoker.pipelines.engine import PipelineEngine, job_input
from stoker.pipelines.scheduler import Scheduler
from stoker.ports.pipelines import PipelineStore
from tests.unit.pipelines.definitions import pipeline, training
from tests.unit.pipelines.fakes import Jobs, Published

DOC = orjson.dumps(pipeline(training("A"))).decode()


async def made(store: PipelineStore, clock: FakeClock, jobs: Jobs) -> Scheduler:
    engine = PipelineEngine(store, jobs, Published(), clock)
    return Scheduler(store, engine, clock)


@pytest.fixture
async def memory() -> tuple[MemoryPipelineStore, FakeClock, Jobs, Scheduler]:
    store, clock, jobs = MemoryPipelineStore(), FakeClock(), Jobs()
    await store.put_pipeline(
        "demo", team="search", definition=DOC, description=None, now=clock.now()
    )
    return store, clock, jobs, await made(store, clock, jobs)


async def test_a_tick_starts_one_execution_named_by_the_tick(
    memory: tuple[MemoryPipelineStore, FakeClock, Jobs, Scheduler],
) -> None:
    store, clock, jobs, scheduler = memory
    await scheduler.put("hourly", "demo", "rate(1 hour)", team="search")
    assert await scheduler.run_once() == 0
    clock.advance(3600)
    assert await scheduler.run_once() == 1
    tick = clock.now()
    execution = await store.get_execution(tick_execution_id("hourly", tick))
    assert execution.state.identity.schedule == "hourly"
    assert await scheduler.run_once() == 0
    assert len(jobs.created) == 1


async def test_a_tick_while_the_previous_execution_runs_is_skipped(
    memory: tuple[MemoryPipelineStore, FakeClock, Jobs, Scheduler],
) -> None:
    store, clock, jobs, scheduler = memory
    await scheduler.put("hourly", "demo", "rate(1 hour)", team="search")
    clock.advance(3600)
    await scheduler.run_once()
    first = tick_execution_id("hourly", clock.now())
    clock.advance(3600)
    assert await scheduler.run_once() == 0  # the first execution still runs
    routed = job_input(f"{first}.A.1", "Completed")
    assert routed is not None
    engine = PipelineEngine(store, jobs, Published(), clock)
    await engine.handle(*routed)
    assert (await store.get_execution(first)).status is ExecutionStatus.SUCCEEDED
    clock.advance(3600)
    assert await scheduler.run_once() == 1


async def test_a_paused_schedule_starts_nothing_and_resuming_skips_the_paused_ticks(
    memory: tuple[MemoryPipelineStore, FakeClock, Jobs, Scheduler],
) -> None:
    _, clock, jobs, scheduler = memory
    await scheduler.put("hourly", "demo", "rate(1 hour)", team="search")
    await scheduler.pause("hourly", team="search")
    clock.advance(5 * 3600)
    assert await scheduler.run_once() == 0
    await scheduler.resume("hourly", team="search")
    assert await scheduler.run_once() == 0
    clock.advance(3600)
    assert await scheduler.run_once() == 1
    assert len(jobs.created) == 1


async def test_schedules_are_for_the_team_s_own_pipelines_with_valid_expressions(
    memory: tuple[MemoryPipelineStore, FakeClock, Jobs, Scheduler],
) -> None:
    _, _, _, scheduler = memory
    with pytest.raises(PipelineNotFound):
        await scheduler.put("x", "demo", "rate(1 hour)", team="ads")
    with pytest.raises(ValueError, match="One must be a question mark"):
        await scheduler.put("x", "demo", "cron(0 9 * * * *)", team="search")
    await scheduler.put("x", "demo", "rate(1 hour)", team="search")
    with pytest.raises(ScheduleConflict):
        await scheduler.put("x", "demo", "rate(2 hours)", team="search")


async def test_two_schedulers_on_one_file_start_one_execution_per_tick(tmp_path: Path) -> None:
    """Two scheduler processes share the SQLite file; both decide the same ticks at once."""
    clock, jobs = FakeClock(), Jobs()
    first, second = SqlitePipelineStore(tmp_path / "p.db"), SqlitePipelineStore(tmp_path / "p.db")
    await first.start()
    await second.start()
    try:
        await first.put_pipeline(
            "demo", team="search", definition=DOC, description=None, now=clock.now()
        )
        one, two = await made(first, clock, jobs), await made(second, clock, jobs)
        await one.put("every-minute", "demo", "rate(1 minute)", team="search", allow_overlap=True)
        for _ in range(5):
            clock.advance(60)
            await asyncio.gather(one.run_once(), two.run_once())
        executions = await first.list_executions("demo")
        assert len(executions) == 5
        assert len(set(jobs.calls)) == 5
        assert len(jobs.created) == 5
        assert (await first.get_schedule("every-minute")).last_tick == clock.now()
    finally:
        await first.close()
        await second.close()
