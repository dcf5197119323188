"""What the planner asks for: work to do (start or stop a step's job) and facts to publish
(each maps to one CloudEvent of the execution)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stoker.core.pipelines.definition import StepType
from stoker.core.pipelines.state import ExecutionStatus


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    pass


@dataclass(frozen=True, slots=True)
class StepReady:
    """Everything the step waits for has succeeded."""

    step: str


@dataclass(frozen=True, slots=True)
class StartStep:
    """Start the step's job. `job_id` is derived from (execution, step, attempt), so a
    start repeated after a crash names the same job and the job store refuses a second."""

    step: str
    attempt: int
    step_type: StepType
    job_id: str
    arguments: Mapping[str, Any]
    cache_key: str | None


@dataclass(frozen=True, slots=True)
class StopStep:
    step: str
    attempt: int
    job_id: str


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    step: str
    failed_attempt: int
    due_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    step: str
    attempt: int
    cache_hit_of: str | None = None
    outcome: bool | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    step: str
    attempt: int
    reason: str
    failure_type: str | None = None


@dataclass(frozen=True, slots=True)
class StepSkipped:
    step: str
    reason: str


@dataclass(frozen=True, slots=True)
class StepStopped:
    step: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    status: ExecutionStatus
    reason: str | None = None


Effect = (
    ExecutionStarted
    | StepReady
    | StartStep
    | StopStep
    | RetryScheduled
    | StepSucceeded
    | StepFailed
    | StepSkipped
    | StepStopped
    | ExecutionFinished
)
