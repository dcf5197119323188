"""The launcher: admits jobs under per instance type caps and starts their training attempts.

Work arrives two ways: New jobs (lifecycle events) and retries that came due (the store's
due-time index, drained by a timer, so a waiting retry never blocks a partition); recovery,
peer takeover and the due timer live in `stoker.lifecycle.takeover`. The
TrainingJobName is derived from job id and attempt, so after a crash between
CreateTrainingJob and the store write the same call finds the job ("already exists") instead
of starting a second one.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import structlog
import tenacity

from stoker.core.clock import Clock
from stoker.core.errors import JobNotFound, StokerError, VersionConflict
from stoker.core.events import CloudEvent, EventData, JobStatusChanged
from stoker.core.job import TERMINAL_STATUSES, JobChange, JobRecord, JobStatus
from stoker.core.job_kind import JobKind, kind_of
from stoker.core.naming import training_job_name
from stoker.core.retry import RetryPolicy, is_retriable
from stoker.lifecycle.admission import AdmissionControl, Admitted
from stoker.lifecycle.attempts import Attempt, build_request, launch_instance_type, launch_span
from stoker.lifecycle.capacity import NO_LATER_ATTEMPT, PeerConfig, Peers, new_owner
from stoker.lifecycle.shared_slots import SharedSlots, SlotStore
from stoker.lifecycle.takeover import Takeover
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.ports.training import (
    TrainingBackend,
    TrainingBackendError,
    TrainingJobAlreadyExists,
    TrainingJobNotFound,
)
from stoker.telemetry import metrics

__all__ = ["Launcher", "LauncherConfig", "build_request"]

log = structlog.get_logger("stoker.launcher")

_INTAKE_BATCH = 256
"""New jobs read from the store at once (one SQLite group, one round of DynamoDB reads)."""

_LAUNCHABLE = (JobStatus.NEW, JobStatus.RETRY_SCHEDULED)
_HOLDING_SLOT = (JobStatus.LAUNCHING, JobStatus.LAUNCHED, JobStatus.IN_PROGRESS, JobStatus.STOPPING)


@dataclass(frozen=True)
class LauncherConfig:
    """caps: concurrent jobs per instance type (mirror the account quota); default_cap for the
    rest (None: no cap). create_retry: backoff for throttling, 5xx and quota errors of
    CreateTrainingJob. orphan_stop_retry: the same for StopTrainingJob of a training job
    created after its job ended, bounded (8 calls, about half a minute of trying).
    store_retry: when a launch fails on the store (a read or a write refused), the job's
    slot is freed at once and the job is offered again after this policy's wait (0.5 s,
    doubling up to 30 s), for as long as the store keeps failing.
    due_poll_interval_s: how often due retries are looked up (and, while jobs wait on a
    full instance type, how often the store's count of its slots is read again).
    peers: leases and takeover between the launchers of a deployment (ADR 0024)."""

    caps: dict[str, int] = field(default_factory=dict)
    default_cap: int | None = None
    create_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_delay_s=0.2, multiplier=2, max_delay_s=30, jitter=0.5, max_attempts=1000
        )
    )
    orphan_stop_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_delay_s=0.2, multiplier=2, max_delay_s=30, jitter=0.5, max_attempts=8
        )
    )
    store_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_delay_s=0.5, multiplier=2, max_delay_s=30, jitter=0.5, max_attempts=1000
        )
    )
    due_poll_interval_s: float = 0.5
    peers: PeerConfig = field(default_factory=PeerConfig)


class Launcher:
    WANTED: ClassVar[frozenset[type[EventData]]] = frozenset({JobStatusChanged})
    """The lifecycle events `on_event` acts on; its consumer passes over the others."""
    WANTED_STATUSES: ClassVar[frozenset[str]] = frozenset(
        {JobStatus.NEW, JobStatus.RETRY_SCHEDULED, *TERMINAL_STATUSES}
    )
    """The status changes `on_event` acts on: New jobs to take in, and ends and retries
    that free a slot."""
    ON_LAUNCH_PATH: ClassVar[bool] = True
    """A New job waits on this consumer's fetch, so it fetches eagerly and handles its
    batches in turn (`stoker.bus.consumer.LAUNCH_PATH`): `on_event` never waits."""

    def __init__(
        self,
        transitioner: Transitioner,
        backend: TrainingBackend,
        clock: Clock,
        config: LauncherConfig | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        owner: str | None = None,
    ) -> None:
        """`owner` names this launcher in the store's slots and leases (default: host, pid
        and a random part). The caps are the job store's (every store adapter keeps them)."""
        self._t = transitioner
        self._sleep = sleep
        self._store = transitioner.store
        self._backend = backend
        self._clock = clock
        self._config = config or LauncherConfig()
        self._admission = AdmissionControl(self._config.caps, self._config.default_cap)
        self._tasks: set[asyncio.Task[None]] = set()
        self._intake: deque[str] = deque()  # New jobs not offered yet, in event order
        self._intake_task: asyncio.Task[None] | None = None
        # Jobs as the intake read them, until they launch: saves reading each job twice. A
        # copy that went stale meanwhile loses the versioned write and the job is re-read.
        self._read_at_intake: dict[str, JobRecord] = {}
        # Launches that failed on the store: failures in a row per job, and the waits
        # before each is offered again (not launches in flight: `drain` cancels them).
        self._store_failures: dict[str, int] = {}
        self._reoffers: set[asyncio.Task[None]] = set()
        store = cast(SlotStore, self._store)
        self._peers = Peers(store, owner or new_owner(), clock, self._config.peers)
        self._slots = SharedSlots(
            store,
            self._admission,
            self._peers,
            clock,
            known=self._read_at_intake,
            launch=lambda admitted: self._spawn(self._launch(admitted)),
            failed=self._launch_failed,
            spawn=self._spawn,
        )
        self._shared = bool(self._config.caps) or self._config.default_cap is not None
        self._takeover = Takeover(
            store,
            self._admission,
            self._slots,
            self._peers,
            clock,
            known=self._read_at_intake,
            launch=lambda admitted: self._spawn(self._launch(admitted)),
            shared=self._shared,
            due_poll_interval_s=self._config.due_poll_interval_s,
        )

    @property
    def admission(self) -> AdmissionControl:
        return self._admission

    @property
    def owner(self) -> str:
        return self._peers.owner

    async def recover(self) -> None:
        """Resume and queue what the store holds after a (re)start (`Takeover.recover`)."""
        await self._takeover.recover()

    async def run_peers(self, stop: asyncio.Event) -> None:
        """Renew this launcher's lease and take over dead peers' share until `stop`
        (`Takeover.run_peers`)."""
        await self._takeover.run_peers(stop)

    async def on_event(self, event: CloudEvent, _record: BusRecord) -> None:
        """Consumer handler for the lifecycle topic."""
        data = event.data
        if not isinstance(data, JobStatusChanged):
            return
        if data.to_status is JobStatus.NEW:
            # Read in the background: awaiting the store here held up every later record of
            # the partition, which capped intake at partitions / store latency. A job whose
            # event was committed but not yet offered when the process dies is still New in
            # the store, and `recover` offers it on the next start.
            self._intake.append(data.job_id)
            if self._intake_task is None or self._intake_task.done():
                self._intake_task = self._spawn(self._take_in())
            return
        if data.to_status.terminal or data.to_status is JobStatus.RETRY_SCHEDULED:
            self._admission.release(data.job_id)
            self._read_at_intake.pop(data.job_id, None)
            if self._shared:
                ended = data.attempt if not data.to_status.terminal else NO_LATER_ATTEMPT
                self._slots.release(data.job_id, ended)
        self._pump()

    async def _take_in(self) -> None:
        """Offer New jobs in the order their events came, reading them a batch at a time."""
        while self._intake:
            ids = [self._intake.popleft() for _ in range(min(len(self._intake), _INTAKE_BATCH))]
            try:
                jobs = await self._store.get_many(ids)
            except Exception as exc:  # the store is failing: keep them first in line, retry
                self._intake.extendleft(reversed(ids))
                log.warning("reading new jobs failed; retrying", jobs=len(ids), error=str(exc))
                await self._sleep(self._config.due_poll_interval_s)
                continue
            for job_id in ids:
                job = jobs.get(job_id)  # None: the job is gone
                if job is not None and job.status is JobStatus.NEW:
                    self._read_at_intake[job.job_id] = job
                    self._slots.note_read(job.job_id, launch_instance_type(job))
                    self._admission.offer(job.job_id, launch_instance_type(job), job.priority)
            self._pump()

    async def due_pass(self) -> int:
        """Offer the due retries that are this launcher's; returns how many
        (`Takeover.due_pass`)."""
        return await self._takeover.due_pass()

    async def run_due_timer(self, stop: asyncio.Event) -> None:
        """Offer due retries every `due_poll_interval_s` until `stop`
        (`Takeover.run_due_timer`)."""
        await self._takeover.run_due_timer(stop)

    async def drain(self) -> None:
        """Wait for launches in flight (on shutdown). Jobs waiting to be offered again after
        a store failure are left as the store has them: `recover` offers them next start."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for task in list(self._reoffers):
            task.cancel()
        await asyncio.gather(*self._reoffers, return_exceptions=True)

    def _pump(self) -> None:
        self._slots.admit()

    def _free_slot(self, job_id: str, instance_type: str, attempt: int) -> None:
        """Free the job's slot in the store (its launch will not happen)."""
        if self._slots.capped(instance_type):
            self._slots.release(job_id, attempt)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("launch task failed", error=repr(task.exception()))

    async def _launch(self, admitted: Admitted) -> None:
        """Launch an admitted job. A store failure on the way frees the slot and offers the
        job again later (`store_retry`), instead of holding the slot with the job New."""
        try:
            await self._launch_admitted(admitted)
            # The store counts the slot from here on; the job's end may reach another
            # launcher (a due retry is launched by the one it hashes to, not by the one
            # whose partition brings its events), so this one keeps no trace of it.
            self._admission.forget(admitted.job_id)
        except JobNotFound:
            self._admission.release(admitted.job_id)  # the job is gone: nothing to launch
            self._free_slot(admitted.job_id, admitted.instance_type, NO_LATER_ATTEMPT)
        except Exception as exc:
            self._launch_failed(admitted, exc)
        else:
            self._store_failures.pop(admitted.job_id, None)

    def _launch_failed(self, admitted: Admitted, exc: Exception) -> None:
        job_id = admitted.job_id
        self._admission.release(job_id)
        self._read_at_intake.pop(job_id, None)
        self._pump()  # the freed slot goes to the next job waiting for it
        failures = self._store_failures.get(job_id, 0) + 1
        policy = self._config.store_retry
        if not policy.may_retry(failures):
            self._store_failures.pop(job_id, None)
            log.error(
                "launch failed on the store too often; the job waits for the next start",
                job_id=job_id,
                failures=failures,
                error=str(exc),
            )
            return
        self._store_failures[job_id] = failures
        delay_s = policy.delay_s(failures)
        level = log.warning if is_retriable(exc) else log.error
        level(
            "launch failed on the store; the job is offered again",
            job_id=job_id,
            failures=failures,
            retry_in_s=round(delay_s, 3),
            error=str(exc),
        )
        task = asyncio.create_task(self._offer_later(admitted, delay_s))
        self._reoffers.add(task)
        task.add_done_callback(self._reoffers.discard)

    async def _offer_later(self, admitted: Admitted, delay_s: float) -> None:
        await self._sleep(delay_s)
        self._admission.offer(admitted.job_id, admitted.instance_type, admitted.priority)
        self._pump()

    async def _launch_admitted(self, admitted: Admitted) -> None:
        job = self._read_at_intake.pop(admitted.job_id, None) or await self._store.get(
            admitted.job_id
        )
        if job.status is JobStatus.LAUNCHING:
            # Left there by a crash, or by a launch whose store write failed after it
            # landed: resume that attempt (its training job name finds one already made).
            await self._create(job, Attempt.of_launching(job))
            return
        if job.status in _HOLDING_SLOT:
            return  # launched after all (a write that landed but whose answer was lost)
        if job.status not in _LAUNCHABLE:
            self._admission.release(job.job_id)
            if job.status.terminal:  # its end may have been handled before the claim
                self._free_slot(job.job_id, admitted.instance_type, NO_LATER_ATTEMPT)
            return
        attempt = job.attempt + 1
        await self._create(
            job,
            Attempt(attempt, training_job_name(job.job_id, attempt), admitted.instance_type),
        )

    async def _create(self, job: JobRecord, launch: Attempt) -> None:
        """CreateTrainingJob for `launch`, then the job (New, RetryScheduled or Launching)
        becomes Launched. Launching is written only when the first call is refused and
        retried: the wait is then long enough to be seen and stopped, and a first call
        that succeeds saves a store write."""
        request = build_request(job, launch.training_job_name, launch.instance_type)
        name = launch.training_job_name

        def bound() -> Any:
            # Bound only when there is something to say: binding for every launch was a
            # visible share of the launcher's CPU.
            return log.bind(job_id=job.job_id, attempt=launch.attempt, training_job_name=name)

        tries = 0

        async def create() -> str | _Ended | None:
            nonlocal job, tries
            tries += 1
            if tries > 1 and await self._moved_meanwhile(job):
                # Stopped while waiting to retry: creating the training job now would
                # start one that nobody follows.
                bound().info("job moved while CreateTrainingJob was retried; not creating it")
                return _ENDED
            try:
                if kind_of(job.spec) is JobKind.PROCESSING:
                    return await self._backend.create_processing_job(request)
                return await self._backend.create_training_job(request)
            except TrainingJobAlreadyExists:
                bound().info("training job already exists; treating as launched")
                return None
            except TrainingBackendError as exc:
                if exc.retriable and job.status is not JobStatus.LAUNCHING:
                    moved = await self._record_launching(job, launch)
                    if moved is None:
                        return _ENDED
                    job = moved
                raise

        def backing_off(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            assert isinstance(exc, TrainingBackendError)
            _LAUNCHES_DEFERRED.inc()
            bound().warning(
                "CreateTrainingJob refused; backing off",
                code=exc.code,
                delay_s=round(state.upcoming_sleep, 3),
                back_pressure=exc.back_pressure,
            )

        with launch_span(job, launch):
            try:
                arn = await self._config.create_retry.call(
                    create, retry_on=_refused_for_now, sleep=self._sleep, before_sleep=backing_off
                )
            except TrainingBackendError as exc:  # refused for good, or refused on every try
                _LAUNCHES_FAILED.inc()
                await self._fail(job, launch, exc)
                return
            if not isinstance(arn, _Ended):
                await self._record_launched(job, launch, arn)
                _LAUNCHES_LAUNCHED.inc()

    async def _record_launched(self, job: JobRecord, launch: Attempt, arn: str | None) -> None:
        """The job -> Launched; the monitor follows the attempt from that status change.
        A job that moved meanwhile (a stop) may leave the training job just
        created without an owner."""
        details: dict[str, Any] = launch.details()
        if arn:
            details["training_job_arn"] = arn
        change = JobChange(
            to_status=JobStatus.LAUNCHED,
            at=self._clock.now(),
            attempt=launch.attempt,
            reason=f"{kind_of(job.spec).operation} accepted",
            details=details,
        )
        try:
            await self._t.move(job, change)
        except VersionConflict:
            await self._stop_if_orphaned(job, launch.training_job_name)

    async def _record_launching(self, job: JobRecord, launch: Attempt) -> JobRecord | None:
        """New or RetryScheduled -> Launching, before waiting to call again: a stop then
        finds the training job's name, and a restart resumes this attempt. None when the job
        moved meanwhile (a stop, a duplicate launch): the launch ends here and the store
        decides what comes next."""
        change = JobChange(
            to_status=JobStatus.LAUNCHING,
            at=self._clock.now(),
            attempt=launch.attempt,
            reason=f"attempt {launch.attempt} admitted; CreateTrainingJob is being retried",
            details=launch.details(),
        )
        try:
            return await self._t.move(job, change)
        except VersionConflict:
            self._admission.release(job.job_id)
            current = await self._store.get(job.job_id)
            if current.status is JobStatus.NEW:
                self._admission.offer(
                    current.job_id, launch_instance_type(current), current.priority
                )
                self._pump()
            return None

    async def _moved_meanwhile(self, job: JobRecord) -> bool:
        """Whether the job left this launch attempt. An unreadable store counts as no: the
        create goes on, and the write after it still refuses a job that moved."""
        current = await self._reread(job, "between create tries")
        if current is None:
            return False
        return current.status is not JobStatus.LAUNCHING or current.attempt != job.attempt

    async def _reread(self, job: JobRecord, when: str) -> JobRecord | None:
        """The job as stored now, or None (logged) when the store cannot say: both callers
        are precautions that must not end a launch."""
        try:
            return await self._store.get(job.job_id)
        except StokerError as exc:
            log.warning(f"could not re-read a job {when}", job_id=job.job_id, error=str(exc))
            return None

    async def _stop_if_orphaned(self, job: JobRecord, name: str) -> None:
        """The job moved while its training job was being created (a stop). While it is
        Stopping, the monitor follows the name and stops the training job. If it has ended
        already (the stop found no training job yet and ended the job), nobody else knows
        about the one just created: the launcher stops it."""
        bound = log.bind(job_id=job.job_id, training_job_name=name)
        current = await self._reread(job, "to check for an orphaned training job")
        if current is None:
            return
        if not current.status.terminal:
            bound.info("job moved while launching; leaving it to its new owner")
            return
        # Ended before this launch: the slot just claimed for it is nobody's.
        self._free_slot(job.job_id, launch_instance_type(job), NO_LATER_ATTEMPT)
        stop = (
            self._backend.stop_processing_job
            if kind_of(current.spec) is JobKind.PROCESSING
            else self._backend.stop_training_job
        )
        try:
            # Throttling or a 5xx is retried: nobody else will stop this training job.
            await self._config.orphan_stop_retry.call(
                functools.partial(stop, name), sleep=self._sleep
            )
        except TrainingJobNotFound:
            return
        except TrainingBackendError as exc:
            # The job's record is final; the training job stops at its MaxRuntimeInSeconds.
            bound.warning(
                "could not stop a training job created after its job ended", error=str(exc)
            )
            return
        bound.info("stopped a training job created after its job ended")

    async def _fail(self, job: JobRecord, launch: Attempt, exc: TrainingBackendError) -> None:
        reason = f"{exc.code}: {exc}"
        self._admission.release(job.job_id)
        self._free_slot(job.job_id, launch.instance_type, launch.attempt)
        try:
            await self._t.move(
                job,
                JobChange(
                    to_status=JobStatus.FAILED,
                    at=self._clock.now(),
                    attempt=launch.attempt,
                    reason=f"{kind_of(job.spec).operation} rejected the request",
                    failure_reason=reason,
                    details={
                        **launch.details(),
                        "failure_code": exc.code,
                        "ended_at": self._clock.now().isoformat(),
                    },
                ),
            )
        except VersionConflict:
            log.info("job moved before it could be failed", job_id=job.job_id)


# The launch path counts into children labelled once.
_LAUNCHES_LAUNCHED = metrics.LAUNCHES.labels("launched")
_LAUNCHES_DEFERRED = metrics.LAUNCHES.labels("deferred")
_LAUNCHES_FAILED = metrics.LAUNCHES.labels("failed")


def _refused_for_now(error: BaseException) -> bool:
    """CreateTrainingJob refused a request that may pass later (throttled, a 5xx, a full
    quota). A store error while recording Launching is not retried here."""
    return isinstance(error, TrainingBackendError) and error.retriable


class _Ended:
    """A launch that ended without a training job to record (the job moved meanwhile)."""


_ENDED = _Ended()
