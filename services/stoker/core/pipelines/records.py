"""What the pipeline store keeps: pipelines (their definitions as given) and executions
(the planner's state with a version for conditional writes), with their JSON forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from stoker.core.errors import StokerError
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.definition import MAX_STEPS
from stoker.core.pipelines.schedules import Schedule
from stoker.core.pipelines.state import ExecutionState, ExecutionStatus

_STATE = TypeAdapter(ExecutionState)

MAX_EXECUTION_EVENTS = 4 * MAX_STEPS + 8
"""Events one save of an execution may carry: a plan announces at most a ready, a start or
an end and a skip per step, and the execution's start and end. A wide fan-out announces
two events per branch in one plan, more than a job's transition ever does."""


def check_execution_outbox(outbox: Sequence[object]) -> None:
    if len(outbox) > MAX_EXECUTION_EVENTS:
        raise ValueError(
            f"at most {MAX_EXECUTION_EVENTS} events per execution save, got {len(outbox)}"
        )


_CACHED = TypeAdapter(CachedRun)


class PipelineNotFound(StokerError):
    def __init__(self, name: str) -> None:
        super().__init__(f"pipeline {name!r} does not exist")
        self.name = name


class ExecutionNotFound(StokerError):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"pipeline execution {execution_id!r} does not exist")
        self.execution_id = execution_id


class ExecutionConflict(StokerError):
    """Another writer saved the execution first: read it again and plan again."""

    def __init__(self, execution_id: str, expected: int, actual: int | None) -> None:
        super().__init__(
            f"pipeline execution {execution_id!r}: expected version {expected}, store has {actual}"
        )
        self.execution_id = execution_id
        self.expected = expected
        self.actual = actual


class PipelineExists(StokerError):
    """A create of a pipeline name already used (SageMaker's ResourceInUse, whose "already
    exists" the SDK's `upsert()` reads as its cue to update)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Pipeline {name!r} already exists")
        self.name = name


MAX_TAGS = 50
"""SageMaker's limit of tags on one resource."""

Tag = tuple[str, str]
"""(key, value), in the order first added."""


@dataclass(frozen=True, slots=True)
class PipelineVersion:
    """One version of a pipeline's definition, as ListPipelineVersions reports it."""

    version: int
    created_at: datetime
    description: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPipeline:
    name: str
    team: str
    definition: str
    """The definition JSON exactly as given (DescribePipeline returns it unchanged)."""
    version: int
    """1 when created, one more at each update."""
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    tags: tuple[Tag, ...] = ()
    versions: tuple[PipelineVersion, ...] = ()
    """Every version made, oldest first (the definitions of older versions are not kept:
    an execution keeps the one it runs)."""


def next_pipeline(
    old: StoredPipeline | None,
    name: str,
    *,
    team: str,
    definition: str,
    description: str | None,
    now: datetime,
    create_only: bool = False,
    tags: Sequence[Tag] | None = None,
) -> StoredPipeline:
    """The record a put of the pipeline stores over `old` (None: there is none), the same
    rules for every store: another team's name is PipelineNotFound, a taken name with
    `create_only` PipelineExists; an update keeps the tags unless `tags` is given."""
    if old is not None and old.team != team:
        raise PipelineNotFound(name)
    if old is not None and create_only:
        raise PipelineExists(name)
    version = 1 if old is None else old.version + 1
    history = old_versions(old) if old is not None else ()
    return StoredPipeline(
        name=name,
        team=team,
        definition=definition,
        version=version,
        created_at=now if old is None else old.created_at,
        updated_at=now,
        description=description,
        tags=check_tags(tags) if tags is not None else (old.tags if old is not None else ()),
        versions=(*history, PipelineVersion(version, now, description)),
    )


def old_versions(pipeline: StoredPipeline) -> tuple[PipelineVersion, ...]:
    """The stored history; a record made before versions were kept reports its newest."""
    if pipeline.versions:
        return pipeline.versions
    return (PipelineVersion(pipeline.version, pipeline.updated_at, pipeline.description),)


def retag(
    pipeline: StoredPipeline, *, add: Sequence[Tag] = (), remove: Sequence[str] = ()
) -> StoredPipeline:
    """AddTags (a key present takes the new value) then DeleteTags (absent keys ignored)."""
    tags = dict(pipeline.tags)
    tags.update(add)
    for key in remove:
        tags.pop(key, None)
    return replace(pipeline, tags=check_tags(list(tags.items())))


def tags_and_versions_doc(record: StoredPipeline) -> dict[str, Any]:
    """The tags and version history of a pipeline as JSON-ready lists, as stores keep them."""
    return {
        "tags": [list(tag) for tag in record.tags],
        "versions": [[v.version, v.created_at.isoformat(), v.description] for v in record.versions],
    }


def tags_and_versions_of(
    doc: Mapping[str, Any],
) -> tuple[tuple[Tag, ...], tuple[PipelineVersion, ...]]:
    """What `tags_and_versions_doc` wrote; a record stored before they were kept has none."""
    tags = tuple((str(k), str(v)) for k, v in doc.get("tags", []))
    versions = tuple(
        PipelineVersion(int(v), datetime.fromisoformat(at), about)
        for v, at, about in doc.get("versions", [])
    )
    return tags, versions


def check_tags(tags: Sequence[Tag]) -> tuple[Tag, ...]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"Tags: at most {MAX_TAGS} tags on a pipeline, got {len(tags)}")
    return tuple(dict(tags).items())


@dataclass(frozen=True, slots=True)
class StoredExecution:
    state: ExecutionState
    version: int
    """1 when created, one more at each save: the condition of the next save."""
    pipeline_version: int
    """The pipeline definition's version the execution runs."""
    definition: str
    """That version's definition: an update of the pipeline does not change a running
    execution (as on SageMaker)."""

    @property
    def execution_id(self) -> str:
        return self.state.identity.execution_id

    @property
    def pipeline_name(self) -> str:
        return self.state.identity.pipeline_name

    @property
    def status(self) -> ExecutionStatus:
        return self.state.status

    @property
    def next_timer(self) -> datetime | None:
        return next_timer(self.state)


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    items: list[StoredExecution]
    """Newest first by (start time, execution id)."""
    next_cursor: str | None
    """Where the next page starts; None on the last page."""


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    schedule: Schedule
    team: str
    version: int
    """1 when made, one more at each change: the condition of the next change."""
    last_tick: datetime | None = None
    """The newest tick handled (started or skipped)."""
    last_execution_id: str | None = None
    """The execution the newest started tick made (the overlap rule asks if it runs)."""

    @property
    def name(self) -> str:
        return self.schedule.name


class ScheduleConflict(StokerError):
    """The schedule changed since it was read (another scheduler handled the tick), or the
    name is taken."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} changed since it was read, or the name is taken")
        self.name = name


class ScheduleNotFound(StokerError):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} does not exist")
        self.name = name


def next_timer(state: ExecutionState) -> datetime | None:
    """The earliest scheduled retry of a running execution."""
    if state.status.terminal:
        return None
    due = [run.retry_at for run in state.steps.values() if run.retry_at is not None]
    return min(due, default=None)


def state_to_json(state: ExecutionState) -> bytes:
    return _STATE.dump_json(state)


def state_from_json(raw: str | bytes) -> ExecutionState:
    return _STATE.validate_json(raw)


_SCHEDULE = TypeAdapter(StoredSchedule)


def schedule_to_json(stored: StoredSchedule) -> bytes:
    return _SCHEDULE.dump_json(stored)


def schedule_from_json(raw: str | bytes) -> StoredSchedule:
    return _SCHEDULE.validate_json(raw)


def cached_run_to_json(run: CachedRun) -> bytes:
    return _CACHED.dump_json(run)


def cached_run_from_json(raw: str | bytes) -> CachedRun:
    return _CACHED.validate_json(raw)
