"""The monitor: follows launched jobs with few API calls.

One `ListTrainingJobs` pass (by last-modified time) per interval finds what changed;
`DescribeTrainingJob` is called only for jobs that reached an end state. Every call waits
for the token bucket, and a ThrottlingException halves its rate, so polls do not fail under
an API throttle. State-change events (EventBridge's "SageMaker Training Job State Change")
can feed the same path when a source for them is configured; repeats are dropped because a
job already in the reported state is left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from stoker.aio import stop_requested
from stoker.core.clock import Clock
from stoker.core.errors import JobNotFound, VersionConflict
from stoker.core.events import CloudEvent, JobAttemptFailed, JobLaunched, JobStatusChanged
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.ratelimit import TokenBucket
from stoker.lifecycle.launcher import _all
from stoker.lifecycle.outbox_events import extra
from stoker.lifecycle.state_changes import StateChange
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.ports.training import (
    Throttled,
    TrainingBackend,
    TrainingBackendError,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
)

log = structlog.get_logger("stoker.monitor")
T = TypeVar("T")

_FOLLOWED = (JobStatus.LAUNCHED, JobStatus.IN_PROGRESS, JobStatus.STOPPING)


@dataclass(frozen=True)
class MonitorConfig:
    """poll_interval_s: time between ListTrainingJobs passes (default 60 s, as the seed).
    lookback_s: overlap between passes so a change stamped during the previous call is not
    missed. api_rate_per_s / api_burst: the token bucket for every SageMaker call."""

    poll_interval_s: float = 60.0
    lookback_s: float = 5.0
    api_rate_per_s: float = 2.0
    api_burst: float = 2.0


@dataclass
class _Followed:
    job_id: str
    stop_sent: bool = False


class Monitor:
    def __init__(
        self,
        transitioner: Transitioner,
        backend: TrainingBackend,
        clock: Clock,
        config: MonitorConfig | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._t = transitioner
        self._store = transitioner.store
        self._backend = backend
        self._clock = clock
        self._config = config or MonitorConfig()
        self._bucket = TokenBucket(clock, self._config.api_rate_per_s, self._config.api_burst)
        self._sleep = sleep
        self._followed: dict[str, _Followed] = {}  # training job name -> job
        self._last_pass: datetime | None = None

    @property
    def followed(self) -> int:
        return len(self._followed)

    async def recover(self) -> None:
        for status in _FOLLOWED:
            async for job in _all(self._store, status):
                name = job.details.get("training_job_name")
                if isinstance(name, str):
                    self._followed[name] = _Followed(job.job_id)

    async def on_event(self, event: CloudEvent, _record: BusRecord) -> None:
        """Consumer handler for the lifecycle topic: start and stop following jobs."""
        data = event.data
        if isinstance(data, JobLaunched):
            self._followed.setdefault(data.training_job_name, _Followed(data.job_id))
        elif isinstance(data, JobStatusChanged):
            if data.to_status.terminal or data.to_status is JobStatus.RETRY_SCHEDULED:
                for name in [n for n, f in self._followed.items() if f.job_id == data.job_id]:
                    del self._followed[name]
            elif data.to_status is JobStatus.STOPPING:
                job = await self._store.get(data.job_id)
                current = job.details.get("training_job_name")
                if isinstance(current, str):
                    self._followed.setdefault(current, _Followed(job.job_id))

    async def on_state_change(self, change: StateChange, _record: BusRecord) -> None:
        """Consumer handler for forwarded SageMaker state-change events."""
        await self.observe(change.training_job_name, change.status)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("monitor pass failed; next pass retries", error=str(exc))
            if await stop_requested(stop, self._config.poll_interval_s):
                return

    async def poll_once(self) -> int:
        """One pass: list what changed, describe what ended, send pending stops."""
        await self._send_stops()
        if not self._followed:
            self._last_pass = self._clock.now()
            return 0
        started = self._clock.now()
        since = (self._last_pass or started - timedelta(days=1)) - timedelta(
            seconds=self._config.lookback_s
        )
        summaries = await self._call(
            lambda: self._backend.list_training_jobs(last_modified_time_after=since)
        )
        self._last_pass = started
        handled = 0
        for summary in summaries:
            followed = self._followed.get(summary.name)
            if followed is not None:
                handled += await self.observe(summary.name, summary.status)
        return handled

    async def observe(self, name: str, status: TrainingJobStatus) -> int:
        """Apply an observed training-job status (from a list pass or a state-change event)."""
        job = await self._current_job(name)
        if job is None:
            return 0
        if status is TrainingJobStatus.IN_PROGRESS:
            if job.status is not JobStatus.LAUNCHED:
                return 0  # a repeated report
            started = {"started_at": self._clock.now().isoformat()}
            await self._move(job, JobStatus.IN_PROGRESS, "training started", started)
            return 1
        if not status.terminal:
            return 0
        described = await self._call(lambda: self._backend.describe_training_job(name))
        await self._finish(job, described)
        self._followed.pop(name, None)
        return 1

    async def _current_job(self, name: str) -> JobRecord | None:
        """The followed job behind a training-job name, if it still runs that attempt."""
        followed = self._followed.get(name)
        if followed is None:
            return None
        try:
            job = await self._store.get(followed.job_id)
        except JobNotFound:
            job = None
        if (
            job is None
            or job.details.get("training_job_name") != name
            or job.status not in _FOLLOWED
        ):
            self._followed.pop(name, None)  # an old attempt's name, or the job moved on
            return None
        return job

    async def _finish(self, job: JobRecord, d: TrainingJobDescription) -> None:
        facts: dict[str, Any] = {
            "billable_seconds": d.billable_seconds,
            "training_seconds": d.training_seconds,
            "started_at": d.training_start_time.isoformat() if d.training_start_time else None,
            "ended_at": (d.training_end_time or d.last_modified_time).isoformat(),
            "model_artifacts": d.model_artifacts,
        }
        facts = {k: v for k, v in facts.items() if v is not None}
        if d.status is TrainingJobStatus.COMPLETED:
            # A job asked to stop that finished anyway is reported as it really ended.
            await self._move(job, JobStatus.COMPLETED, "training completed", facts)
        elif d.status is TrainingJobStatus.STOPPED:
            await self._move(job, JobStatus.STOPPED, "training stopped", facts)
        elif job.status is JobStatus.STOPPING:
            await self._move(
                job,
                JobStatus.FAILED,
                "failed while stopping",
                facts,
                failure_reason=d.failure_reason or "failed while stopping",
            )
        else:
            failed = JobAttemptFailed(
                job_id=job.job_id,
                attempt=max(job.attempt, 1),
                training_job_name=d.name,
                instance_type=str(job.details.get("instance_type") or d.instance_type or ""),
                failure_reason=d.failure_reason or "unknown failure",
                failure_code=(d.failure_reason or "").split(":", 1)[0] or None,
                observed_at=self._clock.now(),
            )
            # Not a transition: the retrier owns the decision. Published straight away; a lost
            # copy is re-derived by the next pass because the job is still followed until then.
            await self._t.publish_extra(extra(failed, job))

    async def _send_stops(self) -> None:
        for name, followed in list(self._followed.items()):
            if followed.stop_sent:
                continue
            job = await self._store.get(followed.job_id)
            if job.status is not JobStatus.STOPPING:
                continue
            try:
                await self._call(lambda n=name: self._backend.stop_training_job(n))  # type: ignore[misc]
            except TrainingJobNotFound:
                await self._move(job, JobStatus.STOPPED, "stopped before training started", {})
                self._followed.pop(name, None)
            followed.stop_sent = True

    async def _move(
        self,
        job: JobRecord,
        to: JobStatus,
        reason: str,
        details: dict[str, Any],
        *,
        failure_reason: str | None = None,
    ) -> None:
        try:
            await self._t.move(
                job,
                JobChange(
                    to_status=to,
                    at=self._clock.now(),
                    reason=reason,
                    details=details,
                    failure_reason=failure_reason,
                ),
            )
        except VersionConflict:
            log.info("job moved meanwhile; next pass re-reads it", job_id=job.job_id)

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One API call under the token bucket; throttling slows the bucket and retries."""
        while True:
            wait = self._bucket.try_take()
            if wait > 0:
                await self._sleep(wait)
                continue
            try:
                result = await request()
            except Throttled:
                self._bucket.throttled()
                log.warning(
                    "SageMaker throttled the monitor; slowing down",
                    rate_per_s=round(self._bucket.current_rate_per_s, 3),
                )
                continue
            except TrainingBackendError as exc:
                if exc.retriable:
                    await self._sleep(1.0)
                    continue
                raise
            self._bucket.recover()
            return result
