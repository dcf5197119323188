"""The monitor: follows launched jobs with few API calls.

One `ListTrainingJobs` pass (by last-modified time) per interval finds what changed. A
listing tells each job's status and end time but not its failure reason, billable time or
model artifacts, which take a `DescribeTrainingJob` each; `stoker.lifecycle.ends` decides
which ends wait for it: failures first, oldest first, as many as the API share describes
within `describe_wait_s`. Beyond that, a Completed or Stopped job is recorded at once from
the listing (`details_pending`) and described in the background, which amends the job and
publishes `JobDescribed`; a failure is described when its turn comes. Every call waits for
the token bucket (the monitor's share of the API rate), the listing before any background
description, and a throttled or failed call is retried with backoff, so polls do not fail
under an API throttle.

State-change events (EventBridge's "SageMaker Training Job State Change") feed the same
path when a source for them is configured; they carry the whole description, so an end they
report is recorded at once, with every detail and no API call. Repeats are dropped because
a job already in the reported state is left alone.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import structlog

from stoker.core.clock import Clock
from stoker.core.errors import JobNotFound, VersionConflict
from stoker.core.events import (
    CloudEvent,
    EventData,
    JobAttemptFailed,
    JobStatusChanged,
)
from stoker.core.job import (
    FAILED_WHILE_STOPPING,
    TERMINAL_STATUSES,
    JobChange,
    JobRecord,
    JobStatus,
)
from stoker.core.job_kind import JobKind, kind_of
from stoker.core.naming import training_job_name
from stoker.core.waiting import first_set, stop_requested
from stoker.lifecycle.ends import (
    DescribeQueue,
    EndSeen,
    Need,
    Queued,
    describe_budget,
    details_pending,
    facts_of,
    listed_end,
    plan_ends,
)
from stoker.lifecycle.followed import Followed, FollowedJobs, remember_newest
from stoker.lifecycle.listing_window import ListingWindow
from stoker.lifecycle.monitor_config import MonitorConfig
from stoker.lifecycle.outbox_events import extra
from stoker.lifecycle.paced_api import PacedApi
from stoker.lifecycle.state_changes import StateChange
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.ports.store import all_jobs
from stoker.ports.training import (
    TrainingBackend,
    TrainingBackendError,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
)

__all__ = ["Monitor", "MonitorConfig"]

log = structlog.get_logger("stoker.monitor")

_FOLLOWED = (JobStatus.LAUNCHED, JobStatus.IN_PROGRESS, JobStatus.STOPPING)
_QUEUED = (JobStatus.NEW, JobStatus.RETRY_SCHEDULED)


@dataclass(frozen=True, slots=True)
class _Seen:
    """A training job's status as a listing showed it, and when it ended (if it did)."""

    status: TrainingJobStatus
    ended_at: datetime | None = None
    kind: JobKind = JobKind.TRAINING


class Monitor:
    WANTED: ClassVar[frozenset[type[EventData]]] = frozenset({JobStatusChanged})
    """The lifecycle events `on_event` acts on; its consumer passes over the others."""
    WANTED_STATUSES: ClassVar[frozenset[str]] = frozenset(
        {JobStatus.LAUNCHED, JobStatus.STOPPING, JobStatus.RETRY_SCHEDULED, *TERMINAL_STATUSES}
    )
    """The status changes `on_event` acts on: attempts to follow, stops to send, and
    attempts that ended."""
    ON_LAUNCH_PATH: ClassVar[bool] = False
    """A launch is followed at the next pass anyway: a background member."""

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
        self._api = PacedApi(
            backend,
            clock,
            rate_per_s=self._config.api_rate_per_s,
            burst=self._config.api_burst,
            retry=self._config.api_retry,
            sleep=sleep,
        )
        self._followed = FollowedJobs()
        # Latest listed status of names not followed (yet): a Launched event that arrives
        # after its job's last change was listed finds the change here, not in a later pass.
        self._unfollowed: dict[str, _Seen] = {}
        # Names of the attempt a job stopped while queued would have made next: a launcher
        # that died between CreateTrainingJob and its Launched write left that
        # training job running under a job now Stopped. Checked against what was listed
        # already (`_unfollowed`) and against the next listing, then forgotten.
        self._stop_if_running: dict[str, JobKind] = {}
        self._orphans: list[tuple[str, JobKind]] = []
        # The last attempt of each job known to have ended (infinity once the job ended),
        # newest last, bounded like `_unfollowed`: a copy of a Launched event that the
        # outbox relay republished after its attempt ended would make the monitor follow a
        # name that is never listed again, so nothing would unfollow it.
        self._ended: dict[str, float] = {}
        self._window = ListingWindow(
            lookback=timedelta(seconds=self._config.lookback_s),
            interval=timedelta(seconds=self._config.poll_interval_s),
        )
        self._queue = DescribeQueue()
        self._queued = asyncio.Event()
        # Clear while a pass lists and describes what it must: background descriptions wait,
        # so they never delay the listing that finds the next ends.
        self._pass_idle = asyncio.Event()
        self._pass_idle.set()

    @property
    def followed(self) -> int:
        return len(self._followed)

    @property
    def describes_waiting(self) -> int:
        """Ended training jobs waiting for DescribeTrainingJob (failures and details)."""
        return len(self._queue)

    async def recover(self) -> None:
        for status in _FOLLOWED:
            async for job in all_jobs(self._store, status):
                name = job.details.get("training_job_name")
                if isinstance(name, str):
                    stopping = status is JobStatus.STOPPING
                    followed = Followed(job.job_id, job.attempt, stopping, kind=kind_of(job.spec))
                    self._followed.follow(name, followed)
        if self._config.describe_wait_s is not None:
            await self._recover_pending_details()

    async def _recover_pending_details(self) -> None:
        """Queue the description of ended jobs recorded without it (newest first, back to
        `details_recovery_s`): the monitor that recorded them may have stopped before."""
        horizon = self._clock.now() - timedelta(seconds=self._config.details_recovery_s)
        for status in (JobStatus.COMPLETED, JobStatus.STOPPED):
            async for job in all_jobs(self._store, status):
                if job.created_at < horizon:
                    break
                name = job.details.get("training_job_name")
                if job.details.get("details_pending") and isinstance(name, str):
                    self._queue.push(
                        Need.DETAILS, EndSeen(name, listed_end(status), job.updated_at), job.job_id
                    )
        if self._queue:
            self._queued.set()

    async def on_event(self, event: CloudEvent, _record: BusRecord) -> None:
        """Consumer handler for the lifecycle topic: start and stop following jobs."""
        data = event.data
        if not isinstance(data, JobStatusChanged):
            return
        if data.to_status is JobStatus.LAUNCHED:
            if data.attempt <= self._ended.get(data.job_id, 0):
                return  # a late copy: that attempt (or the whole job) has ended
            # The launcher names every attempt this way.
            name = training_job_name(data.job_id, data.attempt)
            kind = data.kind or JobKind.TRAINING
            self._followed.follow(name, Followed(data.job_id, data.attempt, kind=kind))
        elif data.to_status.terminal or data.to_status is JobStatus.RETRY_SCHEDULED:
            # A RetryScheduled copy can arrive late (the outbox relay republishes events
            # whose writer was slow to mark them), after the next attempt was launched:
            # it must not unfollow that newer attempt.
            last = None if data.to_status.terminal else data.attempt
            for name in self._followed.names_of(data.job_id):
                known = self._followed.get(name)
                if known is not None and (last is None or known.attempt <= last):
                    self._followed.pop(name)
            ended = math.inf if data.to_status.terminal else data.attempt
            ended = max(ended, self._ended.get(data.job_id, 0))  # copies arrive out of order
            remember_newest(self._ended, data.job_id, ended, self._config.unfollowed_memory)
            if data.to_status is JobStatus.STOPPED and data.from_status in _QUEUED:
                next_name = training_job_name(data.job_id, data.attempt + 1)
                self._watch_for_orphan(next_name, data.kind or JobKind.TRAINING)
        elif data.to_status is JobStatus.STOPPING:
            job = await self._store.get(data.job_id)
            current = job.details.get("training_job_name")
            if isinstance(current, str):
                followed = self._followed.follow(
                    current, Followed(job.job_id, job.attempt, kind=kind_of(job.spec))
                )
                followed.stop_wanted = True

    async def on_state_change(self, change: StateChange, _record: BusRecord) -> None:
        """Consumer handler for forwarded SageMaker state-change events."""
        await self.observe(change.training_job_name, change.status, description=change.description)

    async def run(self, stop: asyncio.Event) -> None:
        """Passes every interval, and the background descriptions, until `stop`."""
        await asyncio.gather(self._poll(stop), self.run_describer(stop))

    async def _poll(self, stop: asyncio.Event) -> None:
        """A pass every `poll_interval_s`, start to start: a pass that lists a burst of ends
        does not push the next one back by its own length."""
        while not stop.is_set():
            started = self._clock.monotonic()
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("monitor pass failed; next pass retries", error=str(exc))
            took = self._clock.monotonic() - started
            if await stop_requested(stop, max(0.0, self._config.poll_interval_s - took)):
                return

    async def run_describer(self, stop: asyncio.Event) -> None:
        """Describe queued training jobs one at a time, behind every pass, until `stop`. A
        description that fails after its retries goes back in the queue if the error says
        another try may succeed; otherwise it is logged and dropped."""
        while not stop.is_set():
            if not self._queue:
                await first_set(self._queued, stop)
                self._queued.clear()
                continue
            await first_set(self._pass_idle, stop)
            entry = self._queue.pop() if not stop.is_set() else None
            if entry is not None:
                await self._describe_logged(entry)

    async def describe_queued(self) -> int:
        """Describe every queued training job now; returns how many were applied."""
        applied = 0
        while (entry := self._queue.pop()) is not None:
            applied += await self._describe_logged(entry)
        return applied

    async def _describe_logged(self, entry: Queued) -> int:
        try:
            return await self._describe_queued(entry)
        except Exception as exc:
            bound = log.bind(training_job_name=entry.name, need=entry.need.name)
            if getattr(exc, "retriable", False):
                bound.warning("description failed; queued again", error=str(exc))
                self._queue.again(entry)
            else:
                bound.error("description failed; dropped", error=str(exc))
            return 0

    async def _describe_queued(self, entry: Queued) -> int:
        if entry.need is Need.REASON:
            job = await self._current_job(entry.name)
            if job is None:
                return 0
            described = await self._api.describe(entry.name, kind_of(job.spec))
            return await self._finish_described(entry.name, job, described)
        try:
            job = await self._store.get(entry.job_id or "")
        except JobNotFound:
            return 0
        if not details_pending(job, entry.name):
            return 0
        return await self._amend(job, await self._api.describe(entry.name, kind_of(job.spec)))

    def _watch_for_orphan(self, name: str, kind: JobKind) -> None:
        seen = self._unfollowed.get(name)
        if seen is not None and seen.kind is kind and seen.status is TrainingJobStatus.IN_PROGRESS:
            self._orphans.append((name, kind))
        else:
            self._stop_if_running[name] = kind

    async def poll_once(self) -> int:
        """One pass: send pending stops, list what changed, record it (describing the ends
        that may wait for it, queueing the others). Background descriptions wait meanwhile."""
        self._pass_idle.clear()
        try:
            return await self._pass()
        finally:
            self._pass_idle.set()

    async def _pass(self) -> int:
        await self._send_stops()
        await self._stop_orphans()
        if not self._followed and not self._stop_if_running:
            # The window stays where it is: a job whose Launched event is still on its way
            # may end meanwhile, and the first pass that follows it must list that change.
            return 0
        started = self._clock.now()
        window = self._window.next(started)
        # Every page of the listing is one API request: each one waits for its own token.
        processing = self._followed.any_processing() or any(
            kind is JobKind.PROCESSING for kind in self._stop_if_running.values()
        )
        summaries = await self._api.list_changed(window.since, processing=processing)
        self._window.listed(started, window)
        watched, self._stop_if_running = self._stop_if_running, {}
        todo: list[tuple[str, _Seen]] = []
        for summary in summaries:
            seen = _Seen(
                summary.status,
                (summary.training_end_time or summary.last_modified_time)
                if summary.status.terminal
                else None,
                summary.kind,
            )
            followed = self._followed.get(summary.name)
            if followed is not None and followed.kind is not summary.kind:
                continue  # a job of the other kind under the same name: not stoker's
            if followed is not None:
                self._unfollowed.pop(summary.name, None)
                if followed.listed is summary.status and (
                    not summary.status.terminal or summary.name in self._queue
                ):
                    continue  # listed again only because consecutive windows overlap
                followed.listed = summary.status
                todo.append((summary.name, seen))
            else:
                self._remember(summary.name, seen)
                if (
                    watched.get(summary.name) is summary.kind
                    and summary.status is TrainingJobStatus.IN_PROGRESS
                ):
                    self._orphans.append((summary.name, summary.kind))
        await self._stop_orphans()
        todo += [
            (n, self._unfollowed.pop(n)) for n in self._followed.names() if n in self._unfollowed
        ]
        return await self._apply(todo)

    async def _apply(self, todo: list[tuple[str, _Seen]]) -> int:
        """Record what a pass found: starts at once; ends as `plan_ends` says."""
        now = self._clock.now()
        ends = [
            EndSeen(name, seen.status, seen.ended_at or now)
            for name, seen in todo
            if seen.status.terminal
        ]
        budget = describe_budget(
            self._config.api_rate_per_s, self._config.describe_wait_s, len(self._queue)
        )
        plan = plan_ends(ends, budget)
        steps: list[Callable[[], Awaitable[int]]] = [
            functools.partial(self.observe, name, seen.status)
            for name, seen in todo
            if not seen.status.terminal
        ]
        steps += [functools.partial(self._record_listed_end, end) for end in plan.record_now]
        applied = await self._run_all(steps)
        for end in plan.describe_later:
            self._queue.push(Need.REASON, end)
        if plan.describe_later:
            self._queued.set()
        described = [functools.partial(self.observe, e.name, e.status) for e in plan.describe_now]
        return applied + await self._run_all(described)

    async def _run_all(self, steps: Sequence[Callable[[], Awaitable[int]]]) -> int:
        """Run steps a few at a time: each costs several store and API round trips, and one
        by one a pass over hundreds of ended jobs took minutes. Each step is about a
        different job, so they do not interfere; the token bucket still paces the API.

        A few workers take the observations in turn. A task per observation,
        waiting at a gate, put a pass's hundreds of first steps on the event loop's queue at
        once, ahead of the launch path, and kept each alive (its coroutines, context and
        future) for the collector to visit while it waited. Every observation is tried even
        when one fails; the first failure is raised after."""
        pending = iter(steps)
        failures: list[BaseException] = []

        async def worker() -> int:
            applied = 0
            for step in pending:
                try:
                    applied += await step()
                except Exception as exc:
                    failures.append(exc)
            return applied

        workers = min(len(steps), self._config.max_concurrent_observations)
        counts = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        for count in counts:
            if isinstance(count, BaseException):
                raise count
        if failures:
            raise failures[0]
        return sum(count for count in counts if isinstance(count, int))

    def _remember(self, name: str, seen: _Seen) -> None:
        remember_newest(self._unfollowed, name, seen, self._config.unfollowed_memory)

    async def observe(
        self,
        name: str,
        status: TrainingJobStatus,
        *,
        description: TrainingJobDescription | None = None,
    ) -> int:
        """Apply an observed training-job status (from a list pass or a state-change event).
        An end is recorded from `description` when it is given (a state-change event carries
        it), else from a DescribeTrainingJob; a failure without its reason is described."""
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
        if (
            description is None
            or description.status is not status
            or (status is TrainingJobStatus.FAILED and not description.failure_reason)
        ):
            description = await self._api.describe(name, kind_of(job.spec))
        return await self._finish_described(name, job, description)

    async def _finish_described(
        self, name: str, job: JobRecord, described: TrainingJobDescription
    ) -> int:
        if await self._finish(job, described):
            self._followed.pop(name)
        else:
            # The job moved meanwhile (a stop raced the end). The listing window is past this
            # change, so it is kept for the next pass, which re-reads the job and applies it.
            ended = described.training_end_time or described.last_modified_time
            self._unfollowed[name] = _Seen(described.status, ended)
        return 1

    async def _record_listed_end(self, end: EndSeen) -> int:
        """Record a Completed or Stopped end from the listing; its description follows."""
        job = await self._current_job(end.name)
        if job is None:
            return 0
        facts = {"ended_at": end.ended_at.isoformat(), "details_pending": True}
        if end.status is TrainingJobStatus.COMPLETED:
            moved = await self._move(job, JobStatus.COMPLETED, "training completed", facts)
        else:
            moved = await self._move(job, JobStatus.STOPPED, "training stopped", facts)
        if not moved:
            self._unfollowed[end.name] = _Seen(end.status, end.ended_at)
            return 1
        self._followed.pop(end.name)
        self._queue.push(Need.DETAILS, end, job.job_id)
        self._queued.set()
        return 1

    async def _amend(self, job: JobRecord, described: TrainingJobDescription) -> int:
        """Add the description of an ended job recorded without it; another monitor may have
        done so meanwhile, which the second read shows."""
        for _ in range(2):
            facts = {**facts_of(described), "details_pending": False}
            if await self._move(job, job.status, "training job described", facts):
                return 1
            job = await self._store.get(job.job_id)
            if not details_pending(job, described.name):
                return 0
        return 0

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
            self._followed.pop(name)  # an old attempt's name, or the job moved on
            return None
        return job

    async def _finish(self, job: JobRecord, d: TrainingJobDescription) -> bool:
        """Record how the attempt ended; False when the job moved since it was read."""
        facts = facts_of(d)
        if d.status is TrainingJobStatus.COMPLETED:
            # A job asked to stop that finished anyway is reported as it really ended.
            return await self._move(job, JobStatus.COMPLETED, "training completed", facts)
        if d.status is TrainingJobStatus.STOPPED:
            return await self._move(job, JobStatus.STOPPED, "training stopped", facts)
        if job.status is JobStatus.STOPPING:
            return await self._move(
                job,
                JobStatus.FAILED,
                FAILED_WHILE_STOPPING,
                facts,
                failure_reason=d.failure_reason or FAILED_WHILE_STOPPING,
            )
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
        return True

    async def _send_stops(self) -> None:
        # Only jobs a Stopping event (or recovery) flagged are read: reading every followed
        # job on every pass made a pass cost one store read per running job.
        for name, followed in self._followed.items():
            if followed.stop_sent or not followed.stop_wanted:
                continue
            job = await self._store.get(followed.job_id)
            if job.status is not JobStatus.STOPPING:
                followed.stop_wanted = False
                continue
            try:
                await self._api.stop(name, kind_of(job.spec))
            except TrainingJobNotFound:
                await self._move(job, JobStatus.STOPPED, "stopped before training started", {})
                self._followed.pop(name)
            followed.stop_sent = True

    async def _stop_orphans(self) -> None:
        """Stop training jobs found running under a job that was stopped while queued."""
        while self._orphans:
            name, kind = self._orphans.pop()
            bound = log.bind(training_job_name=name)
            try:
                await self._api.stop(name, kind)
            except TrainingBackendError as exc:  # gone or ended meanwhile: nothing to stop
                bound.info("could not stop a training job of a stopped job", error=str(exc))
                continue
            bound.warning("stopped a training job created for a job stopped while queued")

    async def _move(
        self,
        job: JobRecord,
        to: JobStatus,
        reason: str,
        details: dict[str, Any],
        *,
        failure_reason: str | None = None,
    ) -> bool:
        """Apply the change; False when the job moved since it was read."""
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
            return False
        return True
