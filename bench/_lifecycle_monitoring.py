"""Part (b) of the lifecycle benchmark: SageMaker API calls spent on following jobs, and how
long after a job ends its owner is told.

N simulated training jobs start at t=0 and run about ten minutes each, so their ends come in
one burst. Pollers follow them until every one is seen in an end state, each on a fresh
simulator with the same seed (so the same job timelines), on one virtual clock shared with
the simulator:

- stoker's Monitor, listing only: one ListTrainingJobs pass (by last-modified time) per
  interval, the ends it finds recorded at once (failures and, within its budget, the first
  ends described before), DescribeTrainingJob for the rest behind the listing; the jobs
  live in a job store and stoker's Notifier (default digest window) tells the owner from
  the terminal events;
- stoker's Monitor with state-change events: the simulator publishes EventBridge's
  "SageMaker Training Job State Change" events on the state-change topic and the monitor
  consumes them (the listing stays as the safety net);
- the seed design as it is written: every interval, DescribeTrainingJob for every
  unfinished job, on an API without a throttle (the calls it asks for); it tells the owner
  when it sees the end;
- the seed design under the same throttle, paced by a token bucket at the throttle's rate so
  it fails no call: a round then takes longer than the interval, and statuses go stale
  instead.

Calls are counted by the simulator (every request, throttled ones included) and by the
client. A throttled call the poller retries is a throttle, not a failed poll; a poll that
raised is a failed poll. Staleness is measured per job from the moment it really ended: to
when the store recorded it, and to when the notification naming it was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _lifecycle_backend import simulated_sagemaker
from _lifecycle_stats import VirtualClock, percentile
from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core import topics
from stoker.core.events import decode_event
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.naming import training_job_name
from stoker.core.notification import Notification
from stoker.core.ratelimit import TokenBucket
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.state_changes import decode_state_change
from stoker.lifecycle.transitions import Transitioner
from stoker.notifier.config import NotifySettings
from stoker.notifier.digest import DEFAULT_WINDOW_S
from stoker.notifier.service import TERMINAL_TOPICS, Notifier
from stoker.ports.bus import BusRecord
from stoker.ports.training import Throttled, TrainingBackend
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.faults import DurationSpec, FaultConfig
from stoker.simulator.state_changes import StateChangeFeed

INSTANCE_TYPE = "ml.m5.large"


@dataclass(frozen=True)
class MonitoringPlan:
    jobs: int = 2000
    poll_interval_s: float = 60.0
    """The seed design's interval (its EventBridge schedule)."""
    stoker_poll_interval_s: float = MonitorConfig.poll_interval_s
    """stoker's default interval for SageMaker."""
    throttle_rps: float = 2.0
    duration_low_s: float = 570.0
    duration_high_s: float = 630.0
    startup_s: float = 30.0
    transport: str = "inprocess"
    """Only in-process: the virtual clock moves when every task sleeps, and a request in
    flight over a socket would not count as work (see the benchmark doc)."""
    seed: int = 11
    give_up_after_s: float = 6 * 3600.0
    """Simulated time after which a poller is reported as not finished."""


@dataclass
class PollerResult:
    name: str
    calls: dict[str, int] = field(default_factory=dict)
    """Requests the simulator received, per operation (throttled ones included)."""
    throttled: int = 0
    failed_polls: int = 0
    rounds: int = 0
    observed: int = 0
    all_terminal_after_s: float | None = None
    staleness_s: list[float] = field(default_factory=list)
    """Per job: when the poller recorded the end minus when the job really ended."""
    told_s: list[float] = field(default_factory=list)
    """Per job: when the notification naming it was sent minus when it really ended."""
    details_after_s: float | None = None
    """When the last job's billable time and model artifacts were known (from t=0)."""
    longest_round_s: float = 0.0
    wall_s: float = 0.0

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def calls_per_job(self, jobs: int) -> float:
        return self.total_calls / jobs

    def staleness(self, q: float) -> float | None:
        return percentile(self.staleness_s, q) if self.staleness_s else None

    def told(self, q: float) -> float | None:
        return percentile(self.told_s, q) if self.told_s else None


def fault_config(plan: MonitoringPlan, *, throttled: bool) -> FaultConfig:
    return FaultConfig(
        seed=plan.seed,
        duration=DurationSpec(
            kind="uniform", low_s=plan.duration_low_s, high_s=plan.duration_high_s
        ),
        startup_s=plan.startup_s,
        throttle_rps=plan.throttle_rps if throttled else None,
        # One second's worth: the same burst the monitor's bucket allows.
        throttle_burst=max(1, int(plan.throttle_rps)) if throttled else None,
    )


def training_request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "bench/img:1", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::000000000000:role/bench",
        "ResourceConfig": {"InstanceType": INSTANCE_TYPE, "InstanceCount": 1, "VolumeSizeInGB": 1},
        "OutputDataConfig": {"S3OutputPath": "s3://bench/out"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def start_jobs(engine: SimulatedSageMaker, count: int) -> dict[str, datetime]:
    """Create `count` jobs at the clock's now, straight in the engine (not API calls the
    pollers make, so not counted); returns each name's real end time."""
    ends: dict[str, datetime] = {}
    for n in range(count):
        name = training_job_name(f"bench-{n:05d}", 1)
        engine.create_training_job(training_request(name))
        ends[name] = engine.jobs[name.lower()].timeline[-1].at
    return ends


def _calls(engine: SimulatedSageMaker) -> dict[str, int]:
    return {op: n for op, n in engine.stats.requests.items() if op != "CreateTrainingJob"}


class _RecordingChannel:
    """The notifier's channel in the benchmark: notes when each job was first told."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.told_at: dict[str, datetime] = {}

    async def send(self, message: Notification) -> None:
        for note in message.jobs:
            self.told_at.setdefault(note.job_id, self._clock.now())

    async def close(self) -> None:
        return None


POLL_STEP_S = 0.1
"""How often the benchmark's consumer and flusher loops look for work, in virtual time (the
services' loops are woken at once; this adds at most this much to a figure)."""


async def run_stoker_monitor(
    plan: MonitoringPlan, on_progress: Callable[[int, int], None], *, state_changes: bool = False
) -> PollerResult:
    """stoker's Monitor over a job store and its Notifier, until every job is terminal, told,
    and described."""
    clock = VirtualClock()
    label = "stoker, state-change events + listing" if state_changes else "stoker, listing only"
    result = PollerResult(label)
    async with simulated_sagemaker(plan.transport, fault_config(plan, throttled=True), clock) as (
        backend,
        engine,
    ):
        ends = start_jobs(engine, plan.jobs)
        store, bus = MemoryJobStore(), MemoryBus()
        await store.start()
        await bus.start()
        transitioner = Transitioner(store, bus)
        for n, name in enumerate(ends):
            await _launched_job(transitioner, clock, f"bench-{n:05d}", name)
        config = MonitorConfig(
            poll_interval_s=plan.stoker_poll_interval_s,
            api_rate_per_s=plan.throttle_rps,
            api_burst=max(1.0, float(int(plan.throttle_rps))),
        )
        monitor = Monitor(transitioner, backend, clock, config, sleep=clock.sleep)
        await monitor.recover()
        channel = _RecordingChannel(clock)
        notifier = Notifier(
            ledger=MemoryLedger(),
            store=store,
            publisher=bus,
            channels={"console": channel},
            settings=NotifySettings(
                ledger="memory", fallback="console", digest_window_s=DEFAULT_WINDOW_S
            ),
            clock=clock,
            sleep=clock.sleep,
        )
        stop = asyncio.Event()

        # Monitor.run's loop, with the wait on the virtual clock: a pass every interval.
        async def follow() -> None:
            while monitor.followed and clock.elapsed_s < plan.give_up_after_s:
                result.rounds += 1
                started = clock.elapsed_s
                try:
                    await monitor.poll_once()
                except Exception:
                    result.failed_polls += 1
                result.longest_round_s = max(result.longest_round_s, clock.elapsed_s - started)
                on_progress(plan.jobs - monitor.followed, plan.jobs)
                if monitor.followed:
                    took = clock.elapsed_s - started
                    await clock.sleep(max(0.0, plan.stoker_poll_interval_s - took))

        async def flush() -> None:
            while not stop.is_set():
                await notifier.flush_once()
                await clock.sleep(POLL_STEP_S)

        async def until_done() -> None:
            loops = [
                asyncio.ensure_future(follow()),
                asyncio.ensure_future(monitor.run_describer(stop)),
                asyncio.ensure_future(
                    _consume(bus, TERMINAL_TOPICS, _event_handler(notifier), clock, stop)
                ),
                asyncio.ensure_future(flush()),
            ]
            if state_changes:
                feed = StateChangeFeed(engine, bus, sleep=clock.sleep, max_wait_s=60.0)
                loops.append(asyncio.ensure_future(feed.run(stop)))
                loops.append(
                    asyncio.ensure_future(
                        _consume(
                            bus,
                            [topics.SAGEMAKER_STATE_CHANGES],
                            _state_change_handler(monitor),
                            clock,
                            stop,
                        )
                    )
                )
            try:
                while clock.elapsed_s < plan.give_up_after_s and (
                    monitor.followed
                    or monitor.describes_waiting
                    or len(channel.told_at) < plan.jobs
                ):
                    await clock.sleep(POLL_STEP_S)
            finally:
                stop.set()
                await asyncio.gather(*loops)

        await clock.run(until_done())
        await notifier.wait_idle()
        t0 = VirtualClock().now()
        last: datetime | None = None
        details: datetime | None = None
        for n, name in enumerate(ends):
            job_id = f"bench-{n:05d}"
            job = await store.get(job_id)
            if job.status is JobStatus.COMPLETED:
                result.observed += 1
                recorded = next(t.at for t in await store.history(job_id) if t.to_status.terminal)
                result.staleness_s.append((recorded - ends[name]).total_seconds())
                last = recorded if last is None else max(last, recorded)
                if not job.details.get("details_pending"):
                    details = job.updated_at if details is None else max(details, job.updated_at)
            if job_id in channel.told_at:
                result.told_s.append((channel.told_at[job_id] - ends[name]).total_seconds())
        if result.observed == plan.jobs and last is not None:
            result.all_terminal_after_s = (last - t0).total_seconds()
        if details is not None:
            result.details_after_s = (details - t0).total_seconds()
        result.calls = _calls(engine)
        result.throttled = sum(engine.stats.throttled.values())
        await bus.close()
        await store.close()
    return result


def _state_change_handler(monitor: Monitor) -> Callable[[BusRecord], Awaitable[None]]:
    async def handle(record: BusRecord) -> None:
        await monitor.on_state_change(decode_state_change(record.value), record)

    return handle


def _event_handler(notifier: Notifier) -> Callable[[BusRecord], Awaitable[None]]:
    async def handle(record: BusRecord) -> None:
        await notifier.handle(decode_event(record.value), record)

    return handle


async def _consume(
    bus: MemoryBus,
    names: Sequence[str],
    handle: Callable[[BusRecord], Awaitable[None]],
    clock: VirtualClock,
    stop: asyncio.Event,
) -> None:
    """A consumer loop on the virtual clock: handle what is there, else wait a step. (The
    services' `Consumer` waits on the real clock.)"""
    source = bus.source(f"bench-{'-'.join(names)}", names)
    try:
        while not stop.is_set():
            records = await source.fetch(500, 0)
            for record in records:
                await handle(record)
            if not records:
                await clock.sleep(POLL_STEP_S)
    finally:
        await source.close()


async def _launched_job(
    transitioner: Transitioner, clock: VirtualClock, job_id: str, name: str
) -> None:
    """A job as the launcher leaves it: Launched, running training job `name`."""
    now = clock.now()
    job = JobRecord(
        job_id=job_id,
        owner="bench",
        spec={"training": training_request(name)},
        created_at=now,
        updated_at=now,
        details={"instance_type": INSTANCE_TYPE},
    )
    job, _ = await transitioner.create(job)
    details = {"training_job_name": name}
    job = await transitioner.move(
        job, JobChange(to_status=JobStatus.LAUNCHING, at=now, attempt=1, details=details)
    )
    await transitioner.move(job, JobChange(to_status=JobStatus.LAUNCHED, at=now))


async def run_seed_poller(
    plan: MonitoringPlan, *, throttled: bool, on_progress: Callable[[int, int], None]
) -> PollerResult:
    """The seed design: each interval, DescribeTrainingJob for every unfinished job.

    Throttled: every call waits for a token bucket at the API's rate (a ThrottlingException
    is tried again at the next token), so rounds overrun the interval. Unthrottled: the API
    takes every call, and each round is the calls the design asks for.
    """
    clock = VirtualClock()
    label = "seed design, paced under the throttle" if throttled else "seed design, no throttle"
    result = PollerResult(label)
    faults = fault_config(plan, throttled=throttled)
    async with simulated_sagemaker(plan.transport, faults, clock) as (backend, engine):
        ends = start_jobs(engine, plan.jobs)
        bucket = (
            TokenBucket(clock, plan.throttle_rps, max(1.0, float(int(plan.throttle_rps))))
            if throttled
            else None
        )
        unfinished = list(ends)
        observed_at: dict[str, datetime] = {}

        async def poll() -> None:
            nonlocal unfinished
            next_round = 0.0
            while unfinished and clock.elapsed_s < plan.give_up_after_s:
                await clock.sleep(next_round - clock.elapsed_s)
                result.rounds += 1
                started = clock.elapsed_s
                next_round = started + plan.poll_interval_s
                still: list[str] = []
                for name in unfinished:
                    try:
                        done = await _ended(backend, bucket, clock, name)
                    except Exception:
                        result.failed_polls += 1
                        still.append(name)
                        continue
                    if done:
                        observed_at[name] = clock.now()
                    else:
                        still.append(name)
                unfinished = still
                result.longest_round_s = max(result.longest_round_s, clock.elapsed_s - started)
                on_progress(plan.jobs - len(unfinished), plan.jobs)

        await clock.run(poll())
        t0 = VirtualClock().now()
        result.observed = len(observed_at)
        result.staleness_s = [(observed_at[n] - ends[n]).total_seconds() for n in observed_at]
        result.told_s = list(result.staleness_s)  # the seed design tells when it sees the end
        if not unfinished:
            result.all_terminal_after_s = (max(observed_at.values()) - t0).total_seconds()
        result.calls = _calls(engine)
        result.throttled = sum(engine.stats.throttled.values())
    return result


async def _ended(
    backend: TrainingBackend, bucket: TokenBucket | None, clock: VirtualClock, name: str
) -> bool:
    """DescribeTrainingJob for one job (under the bucket, if any): has it ended?"""
    while True:
        if bucket is not None:
            wait = bucket.try_take()
            if wait > 0:
                await clock.sleep(wait)
                continue
        try:
            described = await backend.describe_training_job(name)
        except Throttled:
            if bucket is None:
                raise
            continue
        return described.status.terminal
