"""An in-process pipeline store with the real ones' semantics, for tests above the port.
Each method runs without awaiting in the middle, so on one loop every call is atomic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from stoker.core.events import CloudEvent
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.records import (
    ExecutionNotFound,
    ExecutionPage,
    PipelineNotFound,
    ScheduleNotFound,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
    Tag,
    check_execution_outbox,
    next_pipeline,
    retag,
)
from stoker.core.pipelines.state import ExecutionState
from stoker.core.pipelines.store_rules import (
    execution_position,
    execution_save_refusal,
    next_cursor,
    position_of,
    schedule_put_refusal,
)
from stoker.core.store_rules import check_limit
from stoker.ports.store import OutboxEntry


class MemoryPipelineStore:
    def __init__(self) -> None:
        self._pipelines: dict[str, StoredPipeline] = {}
        self._executions: dict[str, StoredExecution] = {}
        self._order: dict[str, int] = {}
        self._seq = itertools.count()
        self._cache: dict[tuple[str, str], CachedRun] = {}
        self._outbox: dict[str, OutboxEntry] = {}
        self._schedules: dict[str, StoredSchedule] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put_pipeline(
        self,
        name: str,
        *,
        team: str,
        definition: str,
        description: str | None,
        now: datetime,
        create_only: bool = False,
        tags: Sequence[Tag] | None = None,
    ) -> StoredPipeline:
        record = next_pipeline(
            self._pipelines.get(name),
            name,
            team=team,
            definition=definition,
            description=description,
            now=now,
            create_only=create_only,
            tags=tags,
        )
        self._pipelines[name] = record
        return record

    async def tag_pipeline(
        self, name: str, *, add: Sequence[Tag] = (), remove: Sequence[str] = ()
    ) -> StoredPipeline:
        record = retag(await self.get_pipeline(name), add=add, remove=remove)
        self._pipelines[name] = record
        return record

    async def get_pipeline(self, name: str) -> StoredPipeline:
        try:
            return self._pipelines[name]
        except KeyError:
            raise PipelineNotFound(name) from None

    async def list_pipelines(self, *, team: str | None = None) -> list[StoredPipeline]:
        return [p for _, p in sorted(self._pipelines.items()) if team is None or p.team == team]

    async def delete_pipeline(self, name: str) -> None:
        if self._pipelines.pop(name, None) is None:
            raise PipelineNotFound(name)

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        pipeline_version: int,
        definition: str,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> tuple[StoredExecution, bool]:
        check_execution_outbox(outbox)
        execution_id = state.identity.execution_id
        if execution_id in self._executions:
            return self._executions[execution_id], False
        stored = StoredExecution(state, 1, pipeline_version, definition)
        self._executions[execution_id] = stored
        self._order[execution_id] = next(self._seq)
        self._add_outbox(outbox)
        return stored, True

    async def get_execution(self, execution_id: str) -> StoredExecution:
        try:
            return self._executions[execution_id]
        except KeyError:
            raise ExecutionNotFound(execution_id) from None

    async def list_executions(self, pipeline_name: str) -> list[StoredExecution]:
        found = [e for e in self._executions.values() if e.pipeline_name == pipeline_name]
        return sorted(found, key=execution_position, reverse=True)

    async def execution_page(
        self,
        pipeline_name: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        check_limit(limit)
        after = position_of(cursor) if cursor is not None else None
        listed = await self.list_executions(pipeline_name)
        if oldest_first:
            listed.reverse()
        found = [
            e
            for e in listed
            if after is None
            or (execution_position(e) > after if oldest_first else execution_position(e) < after)
        ][: limit + 1]
        return ExecutionPage(found[:limit], next_cursor(found, limit))

    async def save_execution(
        self,
        state: ExecutionState,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> StoredExecution:
        check_execution_outbox(outbox)
        execution_id = state.identity.execution_id
        old = self._executions.get(execution_id)
        refusal = execution_save_refusal(
            execution_id, expected_version, old.version if old is not None else None
        )
        if refusal is not None or old is None:
            raise refusal or ExecutionNotFound(execution_id)
        stored = replace(old, state=state, version=old.version + 1)
        self._executions[execution_id] = stored
        self._add_outbox(outbox)
        return stored

    async def running_executions(self, limit: int = 1000) -> list[str]:
        check_limit(limit)
        running = [e for e in self._executions.values() if not e.status.terminal]
        running.sort(key=lambda e: (e.state.started_at, self._order[e.execution_id]))
        return [e.execution_id for e in running[:limit]]

    async def due_executions(self, now: datetime, limit: int = 100) -> list[str]:
        check_limit(limit)
        due = [
            (e.next_timer, e.execution_id)
            for e in self._executions.values()
            if e.next_timer is not None and e.next_timer <= now
        ]
        return [execution_id for _, execution_id in sorted(due)[:limit]]

    async def record_cached_run(self, pipeline_name: str, key: str, run: CachedRun) -> None:
        old = self._cache.get((pipeline_name, key))
        if old is None or old.ended_at <= run.ended_at:
            self._cache[(pipeline_name, key)] = run

    async def cached_runs(self, pipeline_name: str, keys: Sequence[str]) -> dict[str, CachedRun]:
        return {
            k: self._cache[(pipeline_name, k)] for k in keys if (pipeline_name, k) in self._cache
        }

    async def put_schedule(
        self, stored: StoredSchedule, *, expected_version: int | None
    ) -> StoredSchedule:
        old = self._schedules.get(stored.name)
        refusal = schedule_put_refusal(
            stored.name,
            stored.team,
            expected_version,
            (old.version, old.team) if old is not None else None,
        )
        if refusal is not None:
            raise refusal
        self._schedules[stored.name] = stored
        return stored

    async def get_schedule(self, name: str) -> StoredSchedule:
        try:
            return self._schedules[name]
        except KeyError:
            raise ScheduleNotFound(name) from None

    async def list_schedules(self, *, team: str | None = None) -> list[StoredSchedule]:
        return [s for _, s in sorted(self._schedules.items()) if team is None or s.team == team]

    async def delete_schedule(self, name: str) -> None:
        if self._schedules.pop(name, None) is None:
            raise ScheduleNotFound(name)

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)
        return list(itertools.islice(self._outbox.values(), limit))

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self._outbox.pop(entry_id, None)

    def _add_outbox(self, outbox: Sequence[tuple[str, CloudEvent]]) -> None:
        for topic, event in outbox:
            self._outbox[event.id] = OutboxEntry(event.id, topic, event)
