"""What the planner is told: an outcome of a step's job, a timer, a stop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class JobSucceeded:
    step: str
    attempt: int
    properties: Mapping[str, Any] = field(default_factory=dict)
    """The job's Describe response, read by downstream `Get Steps.<step>...` references."""


@dataclass(frozen=True, slots=True)
class JobFailed:
    step: str
    attempt: int
    reason: str
    failure_type: str | None = None
    """The retry policy exception type the failure falls under (e.g.
    `SageMaker.CAPACITY_ERROR`), None when none does."""


@dataclass(frozen=True, slots=True)
class JobStopped:
    step: str
    attempt: int


@dataclass(frozen=True, slots=True)
class TimerDue:
    """The clock reached a retry time the planner asked for (or later)."""


@dataclass(frozen=True, slots=True)
class StopRequested:
    reason: str | None = None


PlannerInput = JobSucceeded | JobFailed | JobStopped | TimerDue | StopRequested
