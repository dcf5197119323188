"""The job state machine and the records the store keeps. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stoker.core.auth import DEFAULT_TEAM, TEAM_PATTERN
from stoker.core.errors import IllegalTransition


class JobStatus(StrEnum):
    NEW = "New"
    LAUNCHING = "Launching"
    LAUNCHED = "Launched"
    IN_PROGRESS = "InProgress"
    RETRY_SCHEDULED = "RetryScheduled"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED})

FAILED_WHILE_STOPPING = "failed while stopping"
"""The reason of Stopping -> Failed: the attempt failed before the stop could end it (the
monitor records it when it sees the failure, the retrier when the report comes first)."""

_S = JobStatus
# Every allowed edge. A stop can arrive at any live state; a running job can still
# finish on its own while it is being stopped, so Stopping may end in any terminal state.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.NEW: frozenset({_S.LAUNCHING, _S.LAUNCHED, _S.FAILED, _S.STOPPING, _S.STOPPED}),
    _S.LAUNCHING: frozenset({_S.LAUNCHED, _S.RETRY_SCHEDULED, _S.FAILED, _S.STOPPING, _S.STOPPED}),
    _S.LAUNCHED: frozenset(
        {_S.IN_PROGRESS, _S.COMPLETED, _S.FAILED, _S.RETRY_SCHEDULED, _S.STOPPING, _S.STOPPED}
    ),
    _S.IN_PROGRESS: frozenset(
        {_S.COMPLETED, _S.FAILED, _S.RETRY_SCHEDULED, _S.STOPPING, _S.STOPPED}
    ),
    _S.RETRY_SCHEDULED: frozenset({_S.LAUNCHING, _S.LAUNCHED, _S.FAILED, _S.STOPPING, _S.STOPPED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.COMPLETED, _S.FAILED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.STOPPED: frozenset(),
}


def check_transition(job_id: str, from_status: JobStatus, to_status: JobStatus) -> None:
    """Raise IllegalTransition unless the state machine has the edge."""
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise IllegalTransition(job_id, from_status.value, to_status.value)


class JobRecord(BaseModel):
    """A job as the store holds it. `version` grows by one with every transition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    owner: str = Field(min_length=1, max_length=128)
    team: str = Field(
        default=DEFAULT_TEAM,
        pattern=TEAM_PATTERN,
        description="whose job it is: the submitter's team; its readers and stoppers",
    )
    status: JobStatus = JobStatus.NEW
    version: int = Field(default=1, ge=1)
    attempt: int = Field(default=0, ge=0, description="launch attempts made so far")
    priority: int = Field(default=0, description="higher launches first")
    spec: dict[str, Any] = Field(default_factory=dict, description="the submitted JobSpec")
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None = Field(
        default=None, description="when a scheduled retry becomes due (RetryScheduled only)"
    )
    failure_reason: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="backend facts: training job name, ARN, timings"
    )


class JobChange(BaseModel):
    """One transition request: the new status and what changes with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to_status: JobStatus
    at: datetime
    reason: str | None = None
    attempt: int | None = None
    due_at: datetime | None = None
    failure_reason: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="merged into JobRecord.details"
    )

    def amends(self, job: JobRecord) -> bool:
        """Whether this change amends an ended job instead of moving it: the same terminal
        status, with facts the backend reported after the end was recorded. An amendment
        changes only `details`; it is not a transition (no history line, no trend count)."""
        return self.to_status is job.status and job.status.terminal

    def apply(self, job: JobRecord) -> JobRecord:
        """The record after this change. Checks the state machine; the store checks the version."""
        if self.amends(job):
            if (
                self.attempt is not None
                or self.failure_reason is not None
                or self.due_at is not None
            ):
                raise IllegalTransition(job.job_id, job.status.value, self.to_status.value)
            return job.model_copy(
                update={
                    "version": job.version + 1,
                    "updated_at": self.at,
                    "details": {**job.details, **self.details},
                }
            )
        check_transition(job.job_id, job.status, self.to_status)
        return job.model_copy(
            update={
                "status": self.to_status,
                "version": job.version + 1,
                "attempt": job.attempt if self.attempt is None else self.attempt,
                "updated_at": self.at,
                # due_at only means something while a retry waits.
                "due_at": self.due_at if self.to_status is JobStatus.RETRY_SCHEDULED else None,
                "failure_reason": self.failure_reason
                if self.failure_reason is not None
                else job.failure_reason,
                "details": {**job.details, **self.details},
            }
        )


class Transition(BaseModel):
    """One line of a job's history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    version: int = Field(description="the job's version after this transition")
    from_status: JobStatus | None = Field(description="None for the creation")
    to_status: JobStatus
    at: datetime
    reason: str | None = None
    attempt: int = 0
