"""Which ended training jobs the monitor describes first, and which it records without waiting.

A listing tells each job's status and end time, but not its failure reason, billable time
or model artifacts: those take one DescribeTrainingJob each, and under the API's throttle a
burst of ends takes far longer to describe than a poll interval. So the ends a pass finds
are ordered, failures first (the retrier cannot decide without the reason) and oldest end
first within each kind, and described while the monitor's budget lasts
(`MonitorConfig.describe_wait_s`). The rest wait in a `DescribeQueue`: a Completed or Stopped
job is recorded at once from its listing (the owner is told now; billable time and model
artifacts follow), a failure waits for its description. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from stoker.core.job import JobRecord, JobStatus
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus


class Need(IntEnum):
    """Why a training job waits for its description; the lower, the sooner."""

    REASON = 0
    """It failed: the retrier waits for the failure reason."""
    DETAILS = 1
    """Its end is recorded and told; billable time and model artifacts follow."""


@dataclass(frozen=True, slots=True)
class EndSeen:
    """A training job some source reported ended."""

    name: str
    status: TrainingJobStatus
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class EndPlan:
    """What to do with the ends one pass found."""

    describe_now: list[EndSeen] = field(default_factory=list)
    """Described before they are recorded, within the budget: failures first, oldest first."""
    record_now: list[EndSeen] = field(default_factory=list)
    """Completed or Stopped beyond the budget: recorded from the listing, described later."""
    describe_later: list[EndSeen] = field(default_factory=list)
    """Failures beyond the budget: described (and recorded) when their turn comes."""


def order(ends: Iterable[EndSeen]) -> list[EndSeen]:
    """Failures first, then the others; the oldest end first within each."""
    return sorted(
        ends,
        key=lambda e: (e.status is not TrainingJobStatus.FAILED, e.ended_at, e.name),
    )


def plan_ends(ends: Iterable[EndSeen], budget: int) -> EndPlan:
    """Split `ends` so that at most `budget` wait for a description before they are recorded."""
    plan = EndPlan()
    for end in order(ends):
        if len(plan.describe_now) < budget:
            plan.describe_now.append(end)
        elif end.status is TrainingJobStatus.FAILED:
            plan.describe_later.append(end)
        else:
            plan.record_now.append(end)
    return plan


def describe_budget(rate_per_s: float, wait_s: float | None, queued: int) -> int:
    """How many ends of a pass may be described before they are recorded: as many as the API
    share allows within `wait_s` (None: every one), less what already waits in the queue."""
    if wait_s is None:
        return sys.maxsize
    return max(0, math.floor(rate_per_s * wait_s) - queued)


@dataclass(frozen=True, slots=True, order=True)
class Queued:
    need: Need
    ended_at: datetime
    seq: int
    name: str = field(compare=False)
    job_id: str | None = field(default=None, compare=False)
    """The job whose end is recorded (DETAILS), to amend with the description."""


class DescribeQueue:
    """Training jobs waiting for DescribeTrainingJob: REASON before DETAILS, oldest end first;
    a name is queued once."""

    def __init__(self) -> None:
        self._heap: list[Queued] = []
        self._names: set[str] = set()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def push(self, need: Need, end: EndSeen, job_id: str | None = None) -> bool:
        """Queue `end`; False when its name waits already."""
        if end.name in self._names:
            return False
        self._names.add(end.name)
        heapq.heappush(self._heap, Queued(need, end.ended_at, next(self._seq), end.name, job_id))
        return True

    def again(self, entry: Queued) -> None:
        """Queue an entry whose description failed, behind the others of its kind and age."""
        if entry.name in self._names:
            return
        self._names.add(entry.name)
        heapq.heappush(
            self._heap,
            Queued(entry.need, entry.ended_at, next(self._seq), entry.name, entry.job_id),
        )

    def pop(self) -> Queued | None:
        if not self._heap:
            return None
        entry = heapq.heappop(self._heap)
        self._names.discard(entry.name)
        return entry

    def waiting(self, need: Need) -> int:
        return sum(1 for entry in self._heap if entry.need is need)


def facts_of(d: TrainingJobDescription) -> dict[str, Any]:
    """What a description adds to an ended job's details."""
    facts: dict[str, Any] = {
        "billable_seconds": d.billable_seconds,
        "training_seconds": d.training_seconds,
        "started_at": d.training_start_time.isoformat() if d.training_start_time else None,
        "ended_at": (d.training_end_time or d.last_modified_time).isoformat(),
        "model_artifacts": d.model_artifacts,
    }
    return {k: v for k, v in facts.items() if v is not None}


def details_pending(job: JobRecord, name: str) -> bool:
    """Whether `job` ended under the attempt `name` and still waits for its description."""
    return (
        job.status.terminal
        and job.details.get("training_job_name") == name
        and bool(job.details.get("details_pending"))
    )


def listed_end(status: JobStatus) -> TrainingJobStatus:
    """The backend status a Completed or Stopped job was recorded from."""
    return (
        TrainingJobStatus.COMPLETED if status is JobStatus.COMPLETED else TrainingJobStatus.STOPPED
    )
