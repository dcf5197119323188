"""What a caller may do with pipelines, executions and schedules, scoped to a team.

Both faces of the API use this: the SageMaker operations (`stoker.api.sagemaker`) and the
plain HTTP routes. A caller's team sees only its own pipelines and executions: another
team's answers PipelineNotFound / ExecutionNotFound, like one that does not exist. `team`
None is an admin, who sees every team's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stoker.core.clock import Clock
from stoker.core.errors import StokerError
from stoker.core.pipelines import parse_definition
from stoker.core.pipelines.records import (
    ExecutionNotFound,
    ExecutionPage,
    PipelineExists,
    PipelineNotFound,
    ScheduleNotFound,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
    Tag,
)
from stoker.core.pipelines.store_rules import cursor_after, cursor_at
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.scheduler import Scheduler
from stoker.ports.objects import ObjectMissing, ObjectReader, ObjectStoreUnavailable
from stoker.ports.pipelines import PipelineStore

__all__ = ["DefinitionUnreadable", "PipelineExists", "PipelineOperations", "Upserted"]

MAX_PAGE_READS = 10
"""Store pages one listing request reads at most, so a request stays bounded even where
most of a pipeline's executions are filtered out (another team's, of a pipeline of the
same name deleted earlier); the page then holds fewer and carries a cursor."""

MAX_DEFINITION_BYTES = 1 << 20
"""The largest definition read from the object store (SageMaker takes up to 1 MB there)."""


class DefinitionUnreadable(StokerError):
    """`PipelineDefinitionS3Location` names no object that can be read, or none is served."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"PipelineDefinitionS3Location: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Upserted:
    pipeline: StoredPipeline
    created: bool


class PipelineOperations:
    def __init__(
        self,
        store: PipelineStore,
        engine: PipelineEngine,
        clock: Clock,
        *,
        objects: ObjectReader | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self._objects = objects
        self._scheduler = Scheduler(store, engine, clock)

    def pipeline_arn(self, name: str) -> str:
        return self._engine.pipeline_arn(name)

    async def close(self) -> None:
        if self._objects is not None:
            await self._objects.close()

    async def put_pipeline(
        self,
        name: str,
        definition: str,
        *,
        team: str,
        description: str | None = None,
        create_only: bool = False,
        update_only: bool = False,
        tags: list[Tag] | None = None,
    ) -> Upserted:
        """Create or update a pipeline after checking its definition (DefinitionError names
        each bad step and field). `create_only`: PipelineExists when the name is taken (the
        store checks and writes in one step, so of two racing creates one wins; another
        team's name is PipelineNotFound); `update_only`: PipelineNotFound when there is
        none. `tags` (a create's) replace the pipeline's; None keeps them."""
        parse_definition(definition)
        existing = await self._find_pipeline(name, team)
        if existing is None and update_only:
            raise PipelineNotFound(name)
        if description is None and existing is not None and not create_only:
            description = existing.description
        stored = await self._store.put_pipeline(
            name,
            team=team,
            definition=definition,
            description=description,
            now=self._clock.now(),
            create_only=create_only,
            tags=tags,
        )
        return Upserted(stored, created=stored.version == 1)

    async def read_definition(self, bucket: str, key: str, version_id: str | None) -> str:
        """A definition kept in the object store (the SDK puts one there past 100 KB)."""
        if self._objects is None:
            raise DefinitionUnreadable(
                "this stoker has no S3 client (the `aws` extra is not installed)"
            )
        try:
            data = await self._objects.read(
                bucket, key, version_id=version_id, max_bytes=MAX_DEFINITION_BYTES
            )
        except ObjectMissing as exc:
            raise DefinitionUnreadable(f"no object s3://{bucket}/{key}") from exc
        except (ObjectStoreUnavailable, ValueError) as exc:
            raise DefinitionUnreadable(f"cannot read s3://{bucket}/{key}: {exc}") from exc
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionUnreadable(f"s3://{bucket}/{key} is not UTF-8 text") from exc

    async def tag_pipeline(
        self,
        name: str,
        *,
        team: str | None,
        add: list[Tag] | None = None,
        remove: list[str] | None = None,
    ) -> StoredPipeline:
        """AddTags / DeleteTags of a pipeline (ValueError past 50 tags)."""
        await self.get_pipeline(name, team=team)
        return await self._store.tag_pipeline(name, add=add or [], remove=remove or [])

    async def get_pipeline(self, name: str, *, team: str | None) -> StoredPipeline:
        pipeline = await self._store.get_pipeline(name)
        if team is not None and pipeline.team != team:
            raise PipelineNotFound(name)
        return pipeline

    async def list_pipelines(self, *, team: str | None) -> list[StoredPipeline]:
        return await self._store.list_pipelines(team=team)

    async def delete_pipeline(self, name: str, *, team: str | None) -> StoredPipeline:
        pipeline = await self.get_pipeline(name, team=team)
        await self._store.delete_pipeline(name)
        return pipeline

    async def start_execution(
        self,
        name: str,
        parameters: Mapping[str, Any],
        *,
        team: str | None,
        owner: str | None,
    ) -> StoredExecution:
        """ParameterError (naming each parameter) before anything is stored when the
        parameters do not fit; an admin starts it in the pipeline's team."""
        pipeline = await self.get_pipeline(name, team=team)
        return await self._engine.start_execution(name, parameters, team=pipeline.team, owner=owner)

    async def get_execution(self, execution_id: str, *, team: str | None) -> StoredExecution:
        stored = await self._store.get_execution(execution_id)
        if team is not None and stored.state.identity.team != team:
            raise ExecutionNotFound(execution_id)
        return stored

    async def list_executions(self, name: str, *, team: str | None) -> list[StoredExecution]:
        """Newest first; PipelineNotFound for an unknown pipeline (or another team's)."""
        await self.get_pipeline(name, team=team)
        executions = await self._store.list_executions(name)
        return [e for e in executions if team is None or e.state.identity.team == team]

    async def execution_page(
        self,
        name: str,
        *,
        team: str | None,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> ExecutionPage:
        """A page of the pipeline's executions of the caller's team, newest first (or
        oldest first), started strictly between the bounds given, from after `cursor` (a
        page's `next_cursor`; InvalidCursor for any other). Reads the store's pages, never
        the whole list: reading starts at the first bound and stops at the other one.
        PipelineNotFound for an unknown pipeline (or another team's)."""
        await self.get_pipeline(name, team=team)
        start, end = (
            (started_after, started_before) if oldest_first else (started_before, started_after)
        )
        if cursor is None and start is not None:
            cursor = cursor_at(start, oldest_first=oldest_first)
        shown: list[StoredExecution] = []
        for _ in range(MAX_PAGE_READS):
            # One more than the page needs: whether a next page exists is known here, so
            # the last page carries no cursor to an empty one.
            page = await self._store.execution_page(
                name, limit=limit - len(shown) + 1, cursor=cursor, oldest_first=oldest_first
            )
            for execution in page.items:
                started = execution.state.started_at
                if end is not None and (started >= end if oldest_first else started <= end):
                    return ExecutionPage(shown, None)
                if len(shown) == limit:
                    return ExecutionPage(shown, cursor_after(shown[-1]))
                if start is not None and (started <= start if oldest_first else started >= start):
                    continue  # started at the bound itself: cursor_at includes that moment
                if team is None or execution.state.identity.team == team:
                    shown.append(execution)
            cursor = page.next_cursor
            if cursor is None:
                break
        return ExecutionPage(shown, cursor)

    async def stop_execution(self, execution_id: str, *, team: str | None) -> StoredExecution:
        stored = await self.get_execution(execution_id, team=team)
        if stored.status.terminal:
            return stored
        return await self._engine.stop_execution(execution_id, team=stored.state.identity.team)

    async def put_schedule(
        self,
        name: str,
        pipeline_name: str,
        expression: str,
        *,
        team: str | None,
        start_date: datetime | None = None,
        allow_overlap: bool = False,
        catch_up: bool = False,
    ) -> StoredSchedule:
        """A new schedule of a pipeline (ValueError for a bad expression, ScheduleConflict
        for a name taken); an admin makes it in the pipeline's team."""
        pipeline = await self.get_pipeline(pipeline_name, team=team)
        return await self._scheduler.put(
            name,
            pipeline_name,
            expression,
            team=pipeline.team,
            start_date=start_date,
            allow_overlap=allow_overlap,
            catch_up=catch_up,
        )

    async def get_schedule(self, name: str, *, team: str | None) -> StoredSchedule:
        stored = await self._store.get_schedule(name)
        if team is not None and stored.team != team:
            raise ScheduleNotFound(name)
        return stored

    async def list_schedules(self, *, team: str | None) -> list[StoredSchedule]:
        return await self._store.list_schedules(team=team)

    async def pause_schedule(self, name: str, *, team: str | None) -> StoredSchedule:
        stored = await self.get_schedule(name, team=team)
        return await self._scheduler.pause(name, team=stored.team)

    async def resume_schedule(self, name: str, *, team: str | None) -> StoredSchedule:
        stored = await self.get_schedule(name, team=team)
        return await self._scheduler.resume(name, team=stored.team)

    async def delete_schedule(self, name: str, *, team: str | None) -> None:
        await self.get_schedule(name, team=team)
        await self._store.delete_schedule(name)

    async def _find_pipeline(self, name: str, team: str) -> StoredPipeline | None:
        try:
            return await self.get_pipeline(name, team=team)
        except PipelineNotFound:
            return None
