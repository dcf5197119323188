"""The pipeline store port: pipelines, their executions, cached step runs, and the outbox
of execution events (written with the execution, so a crash keeps both or neither)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from stoker.core.errors import StokerError
from stoker.core.events import CloudEvent
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.effects import StartStep
from stoker.core.pipelines.records import (
    ExecutionPage,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
    Tag,
)
from stoker.core.pipelines.state import ExecutionState
from stoker.ports.store import OutboxEntry


class PipelineStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

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
        """Create the pipeline (version 1) or replace its definition (version + 1), adding
        the version to its history; `core.pipelines.records.next_pipeline` is the record
        stored. A pipeline of another team under that name is PipelineNotFound to this one.
        `create_only`: PipelineExists when the name is taken, checked and written in one
        atomic step, so of two creates of one name exactly one succeeds. `tags` replace
        the pipeline's; None keeps them."""

    async def tag_pipeline(
        self, name: str, *, add: Sequence[Tag] = (), remove: Sequence[str] = ()
    ) -> StoredPipeline:
        """Add (or overwrite by key) and remove tags in one atomic step, without a new
        version (`core.pipelines.records.retag`). PipelineNotFound; ValueError past
        MAX_TAGS."""

    async def get_pipeline(self, name: str) -> StoredPipeline:
        """Raises PipelineNotFound."""

    async def list_pipelines(self, *, team: str | None = None) -> list[StoredPipeline]:
        """By name; only `team`'s when given."""

    async def delete_pipeline(self, name: str) -> None:
        """Raises PipelineNotFound. Its executions stay, for the record."""

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        pipeline_version: int,
        definition: str,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> tuple[StoredExecution, bool]:
        """Store a new execution (version 1) with its outbox events. Idempotent: if the
        execution id exists, returns the stored one and False, writing nothing."""

    async def get_execution(self, execution_id: str) -> StoredExecution:
        """Raises ExecutionNotFound."""

    async def list_executions(self, pipeline_name: str) -> list[StoredExecution]:
        """Newest first by (start time, execution id)."""

    async def execution_page(
        self,
        pipeline_name: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        """Up to `limit` of `list_executions` (in the other order when `oldest_first`),
        from after the position `cursor` (a `next_cursor` of a page, or `cursor_at`; any
        other is InvalidCursor)."""

    async def save_execution(
        self,
        state: ExecutionState,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> StoredExecution:
        """Replace the execution's state if its stored version is `expected_version`,
        atomically with the outbox events. Raises ExecutionConflict when another writer got
        there first (nothing is written), ExecutionNotFound for an unknown id."""

    async def running_executions(self, limit: int = 1000) -> list[str]:
        """Executions that have not ended (Executing or Stopping), oldest first."""

    async def due_executions(self, now: datetime, limit: int = 100) -> list[str]:
        """Running executions with a scheduled retry due at `now`, earliest first."""

    async def record_cached_run(self, pipeline_name: str, key: str, run: CachedRun) -> None:
        """Remember a successful step run for later cache hits (the newest per key wins)."""

    async def cached_runs(self, pipeline_name: str, keys: Sequence[str]) -> dict[str, CachedRun]:
        """The newest remembered run for each of `keys` that has one."""

    async def put_schedule(
        self, stored: StoredSchedule, *, expected_version: int | None
    ) -> StoredSchedule:
        """Store the schedule with version `stored.version`: a new one (`expected_version`
        None; an existing name is ScheduleConflict) or a change of the one stored at
        `expected_version` (ScheduleConflict when another writer changed it first, or for
        a name of another team)."""

    async def get_schedule(self, name: str) -> StoredSchedule:
        """Raises ScheduleNotFound."""

    async def list_schedules(self, *, team: str | None = None) -> list[StoredSchedule]:
        """By name; only `team`'s when given."""

    async def delete_schedule(self, name: str) -> None:
        """Raises ScheduleNotFound."""

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]: ...

    async def mark_published(self, entry_ids: Sequence[str]) -> None: ...


class StepRefused(StokerError):
    """The step's job cannot be made (a request the job checks refuse, a step type the
    backends do not run yet): the step fails with `reason`, it is not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepJobs(Protocol):
    """Runs the jobs of job steps. Both calls are idempotent on `job_id` (derived from the
    execution, step and attempt), so the engine may repeat them after a crash or a lost
    race without starting a step twice."""

    async def start(self, execution: ExecutionState, step: StartStep) -> None:
        """Create the step's job unless a job with `step.job_id` exists. StepRefused when
        the job cannot be made."""

    async def stop(self, job_id: str) -> None:
        """Ask for the job to stop; a job that has ended or does not exist is left alone."""
