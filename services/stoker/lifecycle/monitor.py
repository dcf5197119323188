"""The monitor: follows launched jobs with few API calls.

One `ListTrainingJobs` pass (by last-modified time) per interval finds what changed;
`DescribeTrainingJob` is called only for jobs that reached an end state. Every call waits
for the token bucket (the monitor's share of the API rate), and a throttled or failed call
is retried with backoff, so polls do not fail under an API throttle. State-change events
(EventBridge's "SageMaker Training Job State Change") can feed the same path when a source
for them is configured; repeats are dropped because a job already in the reported state is
left alone.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import structlog
import tenacity

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
from stoker.core.naming import training_job_name
from stoker.core.ratelimit import TokenBucket
from stoker.core.retry import RetryPolicy
from stoker.core.waiting import stop_requested
from stoker.lifecycle.listing_window import ListingWindow
from stoker.lifecycle.outbox_events import extra
from stoker.lifecycle.state_changes import StateChange
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.ports.store import all_jobs
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
K = TypeVar("K")
V = TypeVar("V")

_FOLLOWED = (JobStatus.LAUNCHED, JobStatus.IN_PROGRESS, JobStatus.STOPPING)
_QUEUED = (JobStatus.NEW, JobStatus.RETRY_SCHEDULED)


API_RETRY = RetryPolicy(
    initial_delay_s=1.0, multiplier=2, max_delay_s=30.0, jitter=0.2, max_attempts=6
)


@dataclass(frozen=True)
class MonitorConfig:
    """poll_interval_s: time between ListTrainingJobs passes (default 60 s, as the seed).
    lookback_s: how late a change may reach a listing and still be found (SageMaker stamps
    changes on its own clock, and its listing may lag them); passes overlap by one interval,
    and at least every look-back one reaches back a whole look-back (`ListingWindow`).
    api_rate_per_s / api_burst: the token bucket for every SageMaker call.
    unfollowed_memory: listed names not yet followed whose status is kept (newest win).
    max_concurrent_observations: observed changes applied at once within a pass, each by a
    worker of its own. More makes a pass of many ends take fewer write turns, but their
    steps all become ready together, and in a process shared with the launcher its next
    step waits behind each such round of the event loop. Ends can wait, launches should
    not: a small number keeps the rounds short, at the price of ends recorded a little
    later (`bench/lifecycle.py` (a) measures both)."""

    poll_interval_s: float = 60.0
    lookback_s: float = 5.0
    api_rate_per_s: float = 2.0
    api_burst: float = 2.0
    unfollowed_memory: int = 10_000
    max_concurrent_observations: int = 16
    api_retry: RetryPolicy = API_RETRY
    """How a throttled or failed SageMaker call is retried within a pass (six tries, about
    half a minute of waits); a call that still fails fails the pass, and the next pass tries
    again."""


@dataclass
class _Followed:
    job_id: str
    attempt: int = 0
    stop_wanted: bool = False
    stop_sent: bool = False
    listed: TrainingJobStatus | None = None


class _FollowedJobs:
    """Followed training jobs by name, with an index by job id: a job's end must find its
    names without scanning every followed job (that scan made each end cost O(jobs))."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Followed] = {}
        self._names: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> _Followed | None:
        return self._by_name.get(name)

    def follow(self, name: str, followed: _Followed) -> _Followed:
        """Follow `name` unless it is followed already; returns what is followed."""
        current = self._by_name.get(name)
        if current is not None:
            return current
        self._by_name[name] = followed
        self._names.setdefault(followed.job_id, set()).add(name)
        return followed

    def pop(self, name: str) -> None:
        followed = self._by_name.pop(name, None)
        if followed is None:
            return
        names = self._names.get(followed.job_id)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[followed.job_id]

    def names_of(self, job_id: str) -> list[str]:
        return list(self._names.get(job_id, ()))

    def items(self) -> list[tuple[str, _Followed]]:
        return list(self._by_name.items())

    def names(self) -> list[str]:
        return list(self._by_name)


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
        self._bucket = TokenBucket(clock, self._config.api_rate_per_s, self._config.api_burst)
        self._sleep = sleep
        self._followed = _FollowedJobs()
        # Latest listed status of names not followed (yet): a Launched event that arrives
        # after its job's last change was listed finds the change here, not in a later pass.
        self._unfollowed: dict[str, TrainingJobStatus] = {}
        # Names of the attempt a job stopped while queued would have made next: a launcher
        # that died between CreateTrainingJob and its Launched write left that
        # training job running under a job now Stopped. Checked against what was listed
        # already (`_unfollowed`) and against the next listing, then forgotten.
        self._stop_if_running: set[str] = set()
        self._orphans: list[str] = []
        # The last attempt of each job known to have ended (infinity once the job ended),
        # newest last, bounded like `_unfollowed`: a copy of a Launched event that the
        # outbox relay republished after its attempt ended would make the monitor follow a
        # name that is never listed again, so nothing would unfollow it.
        self._ended: dict[str, float] = {}
        self._window = ListingWindow(
            lookback=timedelta(seconds=self._config.lookback_s),
            interval=timedelta(seconds=self._config.poll_interval_s),
        )

    @property
    def followed(self) -> int:
        return len(self._followed)

    async def recover(self) -> None:
        for status in _FOLLOWED:
            async for job in all_jobs(self._store, status):
                name = job.details.get("training_job_name")
                if isinstance(name, str):
                    stopping = status is JobStatus.STOPPING
                    self._followed.follow(name, _Followed(job.job_id, job.attempt, stopping))

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
            self._followed.follow(name, _Followed(data.job_id, data.attempt))
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
            _remember_newest(self._ended, data.job_id, ended, self._config.unfollowed_memory)
            if data.to_status is JobStatus.STOPPED and data.from_status in _QUEUED:
                self._watch_for_orphan(training_job_name(data.job_id, data.attempt + 1))
        elif data.to_status is JobStatus.STOPPING:
            job = await self._store.get(data.job_id)
            current = job.details.get("training_job_name")
            if isinstance(current, str):
                followed = self._followed.follow(current, _Followed(job.job_id, job.attempt))
                followed.stop_wanted = True

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

    def _watch_for_orphan(self, name: str) -> None:
        if self._unfollowed.get(name) is TrainingJobStatus.IN_PROGRESS:
            self._orphans.append(name)
        else:
            self._stop_if_running.add(name)

    async def poll_once(self) -> int:
        """One pass: list what changed, describe what ended, send pending stops."""
        await self._send_stops()
        await self._stop_orphans()
        if not self._followed and not self._stop_if_running:
            # The window stays where it is: a job whose Launched event is still on its way
            # may end meanwhile, and the first pass that follows it must list that change.
            return 0
        started = self._clock.now()
        window = self._window.next(started)
        # Every page of the listing is one API request: each one waits for its own token.
        summaries = await self._call(
            lambda: self._backend.list_training_jobs(
                last_modified_time_after=window.since, before_page=self._take_token
            ),
            paces_itself=True,
        )
        self._window.listed(started, window)
        watched, self._stop_if_running = self._stop_if_running, set()
        todo: list[tuple[str, TrainingJobStatus]] = []
        for summary in summaries:
            followed = self._followed.get(summary.name)
            if followed is not None:
                self._unfollowed.pop(summary.name, None)
                if followed.listed is summary.status and not summary.status.terminal:
                    continue  # listed again only because consecutive windows overlap
                followed.listed = summary.status
                todo.append((summary.name, summary.status))
            else:
                self._remember(summary.name, summary.status)
                if summary.name in watched and summary.status is TrainingJobStatus.IN_PROGRESS:
                    self._orphans.append(summary.name)
        await self._stop_orphans()
        todo += [
            (n, self._unfollowed.pop(n)) for n in self._followed.names() if n in self._unfollowed
        ]
        return await self._observe_all(todo)

    async def _observe_all(self, todo: list[tuple[str, TrainingJobStatus]]) -> int:
        """Apply observations a few at a time: each costs several store and API round trips,
        and one by one a pass over hundreds of ended jobs took minutes. Each name is a
        different job, so they do not interfere; the token bucket still paces the API.

        A few workers take the observations in turn. A task per observation,
        waiting at a gate, put a pass's hundreds of first steps on the event loop's queue at
        once, ahead of the launch path, and kept each alive (its coroutines, context and
        future) for the collector to visit while it waited. Every observation is tried even
        when one fails; the first failure is raised after."""
        pending = iter(todo)
        failures: list[BaseException] = []

        async def worker() -> int:
            applied = 0
            for name, status in pending:
                try:
                    applied += await self.observe(name, status)
                except Exception as exc:
                    failures.append(exc)
            return applied

        workers = min(len(todo), self._config.max_concurrent_observations)
        counts = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        for count in counts:
            if isinstance(count, BaseException):
                raise count
        if failures:
            raise failures[0]
        return sum(count for count in counts if isinstance(count, int))

    def _remember(self, name: str, status: TrainingJobStatus) -> None:
        _remember_newest(self._unfollowed, name, status, self._config.unfollowed_memory)

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
        if await self._finish(job, described):
            self._followed.pop(name)
        else:
            # The job moved meanwhile (a stop raced the end). The listing window is past this
            # change, so it is kept for the next pass, which re-reads the job and applies it.
            self._unfollowed[name] = status
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
            self._followed.pop(name)  # an old attempt's name, or the job moved on
            return None
        return job

    async def _finish(self, job: JobRecord, d: TrainingJobDescription) -> bool:
        """Record how the attempt ended; False when the job moved since it was read."""
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
                await self._call(functools.partial(self._backend.stop_training_job, name))
            except TrainingJobNotFound:
                await self._move(job, JobStatus.STOPPED, "stopped before training started", {})
                self._followed.pop(name)
            followed.stop_sent = True

    async def _stop_orphans(self) -> None:
        """Stop training jobs found running under a job that was stopped while queued."""
        while self._orphans:
            name = self._orphans.pop()
            bound = log.bind(training_job_name=name)
            try:
                await self._call(functools.partial(self._backend.stop_training_job, name))
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

    async def _take_token(self) -> None:
        while (wait := self._bucket.try_take()) > 0:
            await self._sleep(wait)

    async def _call(self, request: Callable[[], Awaitable[T]], *, paces_itself: bool = False) -> T:
        """One API call under the token bucket, retried by `api_retry` when the error says
        it is worth it (a throttle, a 5xx); every try takes its own token.

        `paces_itself`: the request takes a token per API request it makes (a paged listing).
        """

        async def paced() -> T:
            if not paces_itself:
                await self._take_token()
            return await request()

        return await self._config.api_retry.call(
            paced, sleep=self._sleep, before_sleep=_log_api_retry
        )


def _log_api_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "SageMaker call failed; backing off"
        if not isinstance(error, Throttled)
        else "SageMaker throttled the monitor; backing off",
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 3),
        error=str(error),
    )


def _remember_newest(memory: dict[K, V], key: K, value: V, limit: int) -> None:
    """Put `key` last in `memory` (a dict keeps insertion order), dropping the oldest entry
    beyond `limit`: a bounded memory of what was seen most recently."""
    memory.pop(key, None)
    memory[key] = value
    if len(memory) > limit:
        del memory[next(iter(memory))]
