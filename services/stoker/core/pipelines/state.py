"""The state of one pipeline execution, as the planner reads and rewrites it.

Immutable values: the planner returns a new state with its effects, the engine stores it
with a conditional write, and a replayed event finds the state already moved on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from stoker.core.auth import DEFAULT_TEAM


class StepStatus(StrEnum):
    PENDING = "Pending"
    """Waiting for the steps it depends on."""
    EXECUTING = "Executing"
    """Its job was started (SageMaker shows Starting, then Executing)."""
    RETRY_SCHEDULED = "RetryScheduled"
    """An attempt failed and a retry policy set a time for the next one."""
    STOPPING = "Stopping"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"
    SKIPPED = "Skipped"
    """On a condition's branch that was not taken, or downstream of such a step."""
    NOT_STARTED = "NotStarted"
    """The execution ended (a failure elsewhere, a stop) before this step could start."""

    @property
    def active(self) -> bool:
        """Work is under way or due: the execution cannot end yet."""
        return self in (StepStatus.EXECUTING, StepStatus.RETRY_SCHEDULED, StepStatus.STOPPING)


class ExecutionStatus(StrEnum):
    """SageMaker's PipelineExecutionStatus values."""

    EXECUTING = "Executing"
    STOPPING = "Stopping"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.STOPPED)


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step of one execution: its latest attempt and how the step ended."""

    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    """Attempts started so far (0 before the first)."""
    job_id: str | None = None
    """The stoker job of the current attempt (job steps)."""
    arguments: Mapping[str, Any] | None = None
    """The current attempt's arguments with every expression resolved."""
    cache_key: str | None = None
    first_started_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    retry_at: datetime | None = None
    properties: Mapping[str, Any] | None = None
    """What the step reported (a Describe response; `Outcome` for a condition step)."""
    failure_reason: str | None = None
    failure_type: str | None = None
    cache_hit_of: str | None = None
    """The execution whose successful run this step reused, on a cache hit."""
    outcome: bool | None = None
    """A condition step's result."""


@dataclass(frozen=True, slots=True)
class ExecutionIdentity:
    execution_id: str
    pipeline_name: str
    pipeline_arn: str
    execution_arn: str
    team: str = DEFAULT_TEAM
    owner: str | None = None
    """Who started it (the owner of its step jobs); None for a schedule's tick."""
    schedule: str | None = None
    """The schedule whose tick started the execution, if one did."""


@dataclass(frozen=True, slots=True)
class ExecutionState:
    identity: ExecutionIdentity
    started_at: datetime
    parameters: Mapping[str, Any]
    steps: Mapping[str, StepRun]
    status: ExecutionStatus = ExecutionStatus.EXECUTING
    failure_reason: str | None = None
    ended_at: datetime | None = None
    stop_requested: bool = False

    @property
    def halted(self) -> bool:
        """No new step may start: a step failed or a stop was asked for."""
        return self.stop_requested or any(
            run.status is StepStatus.FAILED for run in self.steps.values()
        )
