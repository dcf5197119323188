"""The retrier: decides what a failed training attempt means.

Rules over the error code and FailureReason (stoker.core.failures) say retry or terminal;
the job's RetryPolicy says how long to wait and how many attempts in all. A retry is a
transition to RetryScheduled with a due time in the store's due-time index; the launcher's
timer picks it up, so nothing waits on a partition. Capacity failures move to the next
instance type of `instance_type_fallbacks`. The checkpoint location is the spec's, the same
for every attempt, so training resumes.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta
from typing import Any, ClassVar

import structlog

from stoker.core.clock import Clock
from stoker.core.errors import VersionConflict
from stoker.core.events import CloudEvent, EventData, JobAttemptFailed, JobRetryScheduled
from stoker.core.failures import FailureClassifier
from stoker.core.job import FAILED_WHILE_STOPPING, JobChange, JobRecord, JobStatus
from stoker.core.job_kind import instance_type_of
from stoker.core.retry import RetryPolicy, RetryPolicyOverrides
from stoker.lifecycle.outbox_events import extra
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.telemetry import metrics

log = structlog.get_logger("stoker.retrier")

_RUNNING = (JobStatus.LAUNCHING, JobStatus.LAUNCHED, JobStatus.IN_PROGRESS)
_CAPACITY_CODES = frozenset({"CapacityError", "InsufficientCapacity", "InsufficientCapacityError"})


class Retrier:
    WANTED: ClassVar[frozenset[type[EventData]]] = frozenset({JobAttemptFailed})
    """The lifecycle events `on_event` acts on; its consumer passes over the others."""
    WANTED_STATUSES: ClassVar[frozenset[str]] = frozenset()
    """No status change: failure reports are what the retrier decides on."""
    ON_LAUNCH_PATH: ClassVar[bool] = False
    """A retry is scheduled seconds ahead: its consumer is a background member."""

    def __init__(
        self,
        transitioner: Transitioner,
        clock: Clock,
        *,
        policy: RetryPolicy | None = None,
        classifier: FailureClassifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._t = transitioner
        self._store = transitioner.store
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._classifier = classifier or FailureClassifier()
        self._rng = rng or random.Random()

    async def on_event(self, event: CloudEvent, _record: BusRecord) -> None:
        """Consumer handler for the lifecycle topic."""
        if isinstance(event.data, JobAttemptFailed):
            await self.decide(event.data)

    async def decide(self, failed: JobAttemptFailed) -> JobRecord | None:
        job = await self._store.get(failed.job_id)
        if job.attempt != failed.attempt:
            return None  # a report of an earlier attempt
        if job.status is JobStatus.STOPPING:
            return await self._fail_while_stopping(job, failed)
        if job.status not in _RUNNING:
            return None  # a repeated report of an attempt already decided
        decision = self._classifier.classify(code=failed.failure_code, reason=failed.failure_reason)
        policy = self._policy.merged(_overrides(job))
        now = self._clock.now()
        bound = log.bind(job_id=job.job_id, attempt=job.attempt)
        if decision.retry and policy.may_retry(job.attempt):
            delay = policy.delay_s(job.attempt, self._rng)
            due = now + timedelta(seconds=delay)
            instance_type = self._next_instance_type(job, decision.category or failed.failure_code)
            reason = decision.category or failed.failure_code or "retriable failure"
            scheduled = JobRetryScheduled(
                job_id=job.job_id,
                attempt=job.attempt,
                next_attempt_at=due,
                reason=reason,
                failure_code=failed.failure_code,
            )
            change = JobChange(
                to_status=JobStatus.RETRY_SCHEDULED,
                at=now,
                reason=reason,
                due_at=due,
                failure_reason=failed.failure_reason,
                details={"instance_type": instance_type, "failure_code": failed.failure_code},
            )
            bound.info(
                "retry scheduled",
                delay_s=round(delay, 3),
                why=decision.explanation,
                instance_type=instance_type,
            )
            moved = await self._move(job, change, extra(scheduled, job))
            if moved is not None:
                metrics.RETRIES.labels(retry_reason_label(reason)).inc()
            return moved
        why = (
            decision.explanation
            if not decision.retry
            else f"gave up after {job.attempt} attempt(s) (max {policy.max_attempts})"
        )
        change = JobChange(
            to_status=JobStatus.FAILED,
            at=now,
            reason=why,
            failure_reason=failed.failure_reason,
            details={"failure_code": failed.failure_code, "ended_at": now.isoformat()},
        )
        bound.warning("job failed", why=why, failure_reason=failed.failure_reason)
        return await self._move(job, change, ())

    async def _fail_while_stopping(
        self, job: JobRecord, failed: JobAttemptFailed
    ) -> JobRecord | None:
        """The attempt failed and then a stop was asked before this report was decided. The
        monitor stopped following the attempt when it reported the failure, and a stop of an
        ended training job changes nothing, so nobody else would end the job: it ends
        Failed, as the monitor ends a Stopping job whose training job it sees fail."""
        now = self._clock.now()
        change = JobChange(
            to_status=JobStatus.FAILED,
            at=now,
            reason=FAILED_WHILE_STOPPING,
            failure_reason=failed.failure_reason,
            details={"failure_code": failed.failure_code, "ended_at": now.isoformat()},
        )
        log.warning(
            "job failed while stopping",
            job_id=job.job_id,
            attempt=job.attempt,
            failure_reason=failed.failure_reason,
        )
        return await self._move(job, change, ())

    async def _move(self, job: JobRecord, change: JobChange, events: Any) -> JobRecord | None:
        try:
            return await self._t.move(job, change, events)
        except VersionConflict:
            log.info("job moved meanwhile; decision dropped", job_id=job.job_id)
            return None

    def _next_instance_type(self, job: JobRecord, category: str | None) -> str:
        current = str(job.details.get("instance_type"))
        if category not in _CAPACITY_CODES:
            return current
        chain = [instance_type_of(job.spec)]
        chain += list(job.spec.get("instance_type_fallbacks", []))
        if current in chain and chain.index(current) + 1 < len(chain):
            return str(chain[chain.index(current) + 1])
        return current


_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


def retry_reason_label(reason: str) -> str:
    """The metric label of a retry's reason: a failure code or category is a short word; a
    training script's own words are not a label (a label per distinct text would grow the
    metric without bound), so they count as `other`."""
    return reason if _LABEL.match(reason) else "other"


def _overrides(job: JobRecord) -> RetryPolicyOverrides | None:
    raw = job.spec.get("retry")
    return RetryPolicyOverrides.model_validate(raw) if raw else None
