"""The scheduler: starts a pipeline's executions at its schedules' ticks.

Each pass reads every schedule, lets `stoker.core.pipelines.schedules.decide` choose the ticks
to start and to skip, starts an execution per tick, then stores the newest tick handled with
a conditional write on the schedule's version. The execution id is derived from the tick,
so starting it again returns the execution already made: two schedulers deciding one tick
start one execution, and a scheduler that crashed between a start and its write starts
nothing new when it runs again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

import structlog

from stoker.core.clock import Clock
from stoker.core.errors import StokerError
from stoker.core.pipelines.records import (
    ExecutionNotFound,
    PipelineNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    StoredSchedule,
)
from stoker.core.pipelines.schedules import Schedule, decide, tick_execution_id
from stoker.core.waiting import stop_requested
from stoker.pipelines.engine import PipelineEngine
from stoker.ports.pipelines import PipelineStore

log = structlog.get_logger("stoker.pipelines.scheduler")


class Scheduler:
    def __init__(
        self,
        store: PipelineStore,
        engine: PipelineEngine,
        clock: Clock,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self._interval_s = interval_s

    async def put(
        self,
        name: str,
        pipeline_name: str,
        expression: str,
        *,
        team: str,
        start_date: datetime | None = None,
        allow_overlap: bool = False,
        catch_up: bool = False,
    ) -> StoredSchedule:
        """Make a schedule of a pipeline of `team`. ValueError for a bad expression."""
        pipeline = await self._store.get_pipeline(pipeline_name)
        if pipeline.team != team:
            raise PipelineNotFound(pipeline_name)
        schedule = Schedule(
            name=name,
            pipeline_name=pipeline_name,
            expression=expression,
            created_at=self._clock.now(),
            start_date=start_date,
            allow_overlap=allow_overlap,
            catch_up=catch_up,
        )
        return await self._store.put_schedule(
            StoredSchedule(schedule, team, 1), expected_version=None
        )

    async def pause(self, name: str, *, team: str) -> StoredSchedule:
        return await self._set_enabled(name, team, enabled=False)

    async def resume(self, name: str, *, team: str) -> StoredSchedule:
        """Enable again; ticks that fell while paused are not run."""
        return await self._set_enabled(name, team, enabled=True)

    async def _set_enabled(self, name: str, team: str, *, enabled: bool) -> StoredSchedule:
        stored = await self._store.get_schedule(name)
        if stored.team != team:
            raise ScheduleNotFound(name)
        now = self._clock.now()
        last_tick = stored.last_tick if not enabled else max(stored.last_tick or now, now)
        changed = dataclasses.replace(
            stored,
            schedule=dataclasses.replace(stored.schedule, enabled=enabled),
            version=stored.version + 1,
            last_tick=last_tick,
        )
        return await self._store.put_schedule(changed, expected_version=stored.version)

    async def run_once(self) -> int:
        """One pass over every schedule; returns how many executions it started."""
        started = 0
        for stored in await self._store.list_schedules():
            try:
                started += await self._decide(stored)
            except StokerError as exc:
                log.warning("schedule pass failed", schedule=stored.name, error=str(exc))
        return started

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the next pass tries again
                log.warning("scheduler pass failed", error=str(exc))
            if await stop_requested(stop, self._interval_s):
                return

    async def _decide(self, stored: StoredSchedule) -> int:
        decision = decide(
            stored.schedule,
            last_tick=stored.last_tick,
            now=self._clock.now(),
            previous_running=await self._running(stored.last_execution_id),
        )
        if not decision.start and decision.last_tick == stored.last_tick:
            return 0
        last_execution = stored.last_execution_id
        schedule = stored.schedule
        for tick in decision.start:
            try:
                execution = await self._engine.start_execution(
                    schedule.pipeline_name,
                    {},
                    team=stored.team,
                    execution_id=tick_execution_id(schedule.name, tick),
                    schedule=schedule.name,
                )
            except StokerError as exc:  # the pipeline is gone, a parameter has no default
                log.warning(
                    "schedule tick not started", schedule=schedule.name, tick=tick, error=str(exc)
                )
                continue
            last_execution = execution.execution_id
        for skipped in decision.skipped:
            log.info(
                "schedule tick skipped",
                schedule=schedule.name,
                tick=skipped.tick,
                through=skipped.through,
                reason=str(skipped.reason),
            )
        moved = dataclasses.replace(
            stored,
            version=stored.version + 1,
            last_tick=decision.last_tick,
            last_execution_id=last_execution,
        )
        try:
            await self._store.put_schedule(moved, expected_version=stored.version)
        except ScheduleConflict:
            return 0  # another scheduler handled these ticks (their executions are one)
        return len(decision.start)

    async def _running(self, execution_id: str | None) -> bool:
        if execution_id is None:
            return False
        try:
            return not (await self._store.get_execution(execution_id)).status.terminal
        except ExecutionNotFound:
            return False
