"""The monitor when its events lag and its store is slow: jobs followed only after their end
was listed, late event copies, stops racing an end, quiet passes that read nothing, and
ended jobs applied concurrently. Each case is one the end-to-end runs hit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from stoker.core.errors import InfrastructureUnavailable
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobStatus
from stoker.core.naming import training_job_name
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher, build_request
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.outbox_events import status_changed
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.ports.training import TrainingJobStatus
from tests.unit.lifecycle.conftest import World, spec

RECORD = BusRecord(topic="stoker.jobs.lifecycle", partition=0, offset=0, key="k", value=b"")


async def _recovered_monitor(world: World, store: object, config: MonitorConfig) -> Monitor:
    """A monitor writing through `store` (a wrapper around the world's store), recovered."""
    transitioner = Transitioner(store, world.bus)  # type: ignore[arg-type]
    monitor = Monitor(transitioner, world.backend, world.clock, config, sleep=world.sleep)
    await monitor.recover()
    return monitor


async def _launch(world: World, *job_ids: str) -> Monitor:
    """Launch the jobs; return a monitor that has not heard of any of them yet."""
    for job_id in job_ids:
        await world.jobs.submit(parse_spec(spec(job_id)))
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    config = MonitorConfig(lookback_s=5, api_rate_per_s=100, api_burst=100)
    return Monitor(world.transitioner, world.backend, world.clock, config, sleep=world.sleep)


def _changed(
    job_id: str,
    to_status: JobStatus,
    *,
    attempt: int,
    version: int,
    from_status: JobStatus = JobStatus.LAUNCHED,
) -> CloudEvent:
    """A status change of job `job_id` as the lifecycle topic carries it."""
    changed = JobStatusChanged(
        job_id=job_id,
        owner="ana",
        version=version,
        from_status=from_status,
        to_status=to_status,
        attempt=attempt,
    )
    return CloudEvent.wrap(changed, time=datetime(2026, 1, 1, tzinfo=UTC))


def _launched(job_id: str, attempt: int, version: int = 2) -> CloudEvent:
    """The Launched status change the monitor follows an attempt from."""
    return _changed(
        job_id, JobStatus.LAUNCHED, attempt=attempt, version=version, from_status=JobStatus.NEW
    )


async def _follow(world: World, monitor: Monitor, job_id: str) -> None:
    job = await world.store.get(job_id)
    await monitor.on_event(_launched(job_id, job.attempt, job.version), RECORD)


async def test_job_that_ended_before_it_was_followed_is_finished(world: World) -> None:
    """Job a ends and is listed while only b is followed; its Launched event comes a minute
    later; the next pass completes it from what the earlier listing showed."""
    monitor = await _launch(world, "a", "b")
    await _follow(world, monitor, "b")
    await monitor.poll_once()
    world.clock.advance(1)
    name_a = (await world.store.get("a")).details["training_job_name"]
    world.backend.set_status(name_a, TrainingJobStatus.COMPLETED)
    world.clock.advance(1)
    await monitor.poll_once()  # lists a's end while a is not followed
    world.clock.advance(60)
    await monitor.poll_once()
    await _follow(world, monitor, "a")
    world.clock.advance(1)
    await monitor.poll_once()
    assert (await world.store.get("a")).status is JobStatus.COMPLETED
    assert monitor.followed == 1  # b only


async def test_window_does_not_move_while_nothing_is_followed(world: World) -> None:
    """With nothing followed the monitor skips listing, but a job that ends meanwhile is
    still found by the first pass after its Launched event arrives."""
    monitor = await _launch(world, "a")
    await monitor.poll_once()
    world.clock.advance(1)
    name_a = (await world.store.get("a")).details["training_job_name"]
    world.backend.set_status(name_a, TrainingJobStatus.FAILED, failure_reason="AlgorithmError: x")
    world.clock.advance(60)
    assert await monitor.poll_once() == 0
    assert world.backend.calls["ListTrainingJobs"] == 0
    await _follow(world, monitor, "a")
    assert await monitor.poll_once() == 1
    assert world.backend.calls["DescribeTrainingJob"] == 1
    assert monitor.followed == 0


async def test_late_retry_scheduled_copy_does_not_unfollow_the_next_attempt(
    world: World,
) -> None:
    """A copy of attempt 1's RetryScheduled event that arrives after attempt 2 was launched
    (republished by the outbox relay) leaves attempt 2 followed; attempt 2's own
    RetryScheduled unfollows it."""
    monitor = await _launch(world, "a")
    await monitor.on_event(_launched("a", attempt=2, version=4), RECORD)
    first_retry = _changed("a", JobStatus.RETRY_SCHEDULED, attempt=1, version=5)
    await monitor.on_event(first_retry, RECORD)
    assert monitor.followed == 1, "attempt 1's late event unfollowed attempt 2"
    second_retry = _changed("a", JobStatus.RETRY_SCHEDULED, attempt=2, version=9)
    await monitor.on_event(second_retry, RECORD)
    assert monitor.followed == 0


async def test_a_late_launched_copy_after_the_end_is_not_followed(world: World) -> None:
    """A copy of the Launched event that the outbox relay republished after the job's end arrives
    after the terminal event: the monitor does not follow that name again (it would never
    be listed again, so nothing would unfollow it)."""
    monitor = await _launch(world, "a")
    await _follow(world, monitor, "a")
    assert monitor.followed == 1
    job = await world.store.get("a")
    ended = _changed("a", JobStatus.COMPLETED, attempt=job.attempt, version=job.version + 1)
    await monitor.on_event(ended, RECORD)
    assert monitor.followed == 0
    await _follow(world, monitor, "a")  # the relay's copy
    assert monitor.followed == 0


async def test_a_late_launched_copy_after_its_attempts_retry_is_not_followed(
    world: World,
) -> None:
    """A copy of attempt 1's Launched event republished after attempt 1 failed and its retry
    was scheduled is not followed again (that training job has ended and drops out of the
    listings); attempt 2's Launched event is, even after a late copy of the older retry."""
    monitor = await _launch(world, "a")
    await monitor.on_event(_launched("a", attempt=1), RECORD)
    retry = _changed("a", JobStatus.RETRY_SCHEDULED, attempt=1, version=3)
    await monitor.on_event(retry, RECORD)
    assert monitor.followed == 0
    await monitor.on_event(_launched("a", attempt=1), RECORD)  # the relay's copy
    assert monitor.followed == 0
    await monitor.on_event(_launched("a", attempt=2, version=4), RECORD)
    await monitor.on_event(retry, RECORD)
    assert monitor.followed == 1


class CountingStore:
    """The memory store, counting `get` calls (a fake wrapping a fake, no patching)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.gets = 0

    async def get(self, job_id: str) -> object:
        self.gets += 1
        return await self._inner.get(job_id)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


async def test_a_quiet_pass_reads_no_job_from_the_store(world: World) -> None:
    """With ten jobs running and nothing changed, passes read no job records: stop requests
    are looked up only for jobs a Stopping event flagged, and a status listed again because
    the windows overlap is not applied again."""
    ids = [f"j{n}" for n in range(10)]
    await _launch(world, *ids)
    counting = CountingStore(world.store)
    monitor = await _recovered_monitor(
        world, counting, MonitorConfig(lookback_s=5, api_rate_per_s=100, api_burst=100)
    )
    await monitor.poll_once()  # the first pass applies InProgress to each job
    assert {(await world.store.get(j)).status for j in ids} == {JobStatus.IN_PROGRESS}
    counting.gets = 0
    world.clock.advance(0.5)
    await monitor.poll_once()
    world.clock.advance(0.5)
    await monitor.poll_once()
    assert counting.gets == 0


class RacingStore(CountingStore):
    """Hands out a job record and, once armed, stops the job right after (an API stop that
    lands between the monitor's read and its write)."""

    def __init__(self, inner: object, world: World) -> None:
        super().__init__(inner)
        self._world = world
        self.armed: str | None = None

    async def get(self, job_id: str) -> object:
        record = await super().get(job_id)
        if self.armed == job_id:
            self.armed = None
            await self._world.jobs.stop(job_id)
        return record


async def test_end_that_loses_a_race_with_a_stop_is_applied_on_the_next_pass(
    world: World,
) -> None:
    """The job completes, but a stop moves it to Stopping between the monitor's read and its
    write. The conflicting write is not the end: the change is applied again to the
    re-read job (Stopping -> Completed) instead of the job being left Stopping."""
    await _launch(world, "a")
    racing = RacingStore(world.store, world)
    monitor = await _recovered_monitor(
        world, racing, MonitorConfig(lookback_s=5, api_rate_per_s=100, api_burst=100)
    )
    await monitor.poll_once()
    name_a = (await world.store.get("a")).details["training_job_name"]
    world.clock.advance(1)
    world.backend.set_status(name_a, TrainingJobStatus.COMPLETED)
    world.clock.advance(1)
    racing.armed = "a"
    await monitor.poll_once()
    world.clock.advance(60)
    await monitor.poll_once()
    assert (await world.store.get("a")).status is JobStatus.COMPLETED
    assert monitor.followed == 0


class OverlapStore(CountingStore):
    """Records how many job reads are in progress at once (each read yields once)."""

    def __init__(self, inner: object) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.peak = 0

    async def get(self, job_id: str) -> object:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)  # a store round trip: other work may run meanwhile
            return await super().get(job_id)
        finally:
            self.in_flight -= 1


async def _ended_together(world: World, ids: list[str]) -> None:
    world.clock.advance(1)
    for job_id in ids:
        name = (await world.store.get(job_id)).details["training_job_name"]
        world.backend.set_status(name, TrainingJobStatus.COMPLETED)


@pytest.mark.parametrize(("bound", "fewest_at_once"), [(4, 2), (1, 1)])
async def test_ended_jobs_of_one_pass_are_applied_concurrently_within_the_bound(
    world: World, bound: int, fewest_at_once: int
) -> None:
    """Twenty jobs end together; one pass records all twenty, working on several at once
    instead of one after another, but never on more than max_concurrent_observations at
    once (a pass must not flood the store or starve the other work of the process)."""
    ids = [f"j{n}" for n in range(20)]
    await _launch(world, *ids)
    overlap = OverlapStore(world.store)
    monitor = await _recovered_monitor(
        world,
        overlap,
        MonitorConfig(api_rate_per_s=100, api_burst=100, max_concurrent_observations=bound),
    )
    await _ended_together(world, ids)
    assert await monitor.poll_once() == 20
    assert {(await world.store.get(j)).status for j in ids} == {JobStatus.COMPLETED}
    assert fewest_at_once <= overlap.peak <= bound


class FailingStore(CountingStore):
    """Fails every read of one job while `failing` names it, as a store that cannot read
    that job's item would."""

    def __init__(self, inner: object, failing: str | None) -> None:
        super().__init__(inner)
        self.failing = failing

    async def get(self, job_id: str) -> object:
        if job_id == self.failing:
            raise InfrastructureUnavailable(f"store: cannot read {job_id}")
        return await super().get(job_id)


async def test_an_end_that_fails_to_apply_does_not_hold_back_the_others(world: World) -> None:
    """Eight jobs end together and the read of one fails: the pass still records the seven
    others, then raises the failure; the next pass records the eighth."""
    ids = [f"j{n}" for n in range(8)]
    await _launch(world, *ids)
    failing = FailingStore(world.store, failing="j3")
    monitor = await _recovered_monitor(
        world,
        failing,
        MonitorConfig(api_rate_per_s=100, api_burst=100, max_concurrent_observations=4),
    )
    await _ended_together(world, ids)
    with pytest.raises(InfrastructureUnavailable, match="cannot read j3"):
        await monitor.poll_once()
    statuses = {j: (await world.store.get(j)).status for j in ids}
    assert statuses.pop("j3") is JobStatus.LAUNCHED
    assert set(statuses.values()) == {JobStatus.COMPLETED}
    failing.failing = None
    world.clock.advance(1)
    assert await monitor.poll_once() == 1
    assert (await world.store.get("j3")).status is JobStatus.COMPLETED


async def _stopped_while_queued(world: World, job_id: str) -> tuple[CloudEvent, str]:
    """Submit `job_id` and create its first training job as a launcher that died before
    its Launched write would have; then stop the job, still New. Returns the
    Stopped event and the training job's name."""
    job, _ = await world.jobs.submit(parse_spec(spec(job_id)))
    name = training_job_name(job_id, 1)
    await world.backend.create_training_job(build_request(job, name, "ml.m5.large"))
    stopped = await world.jobs.stop(job_id)
    assert stopped.status is JobStatus.STOPPED
    return status_changed(job, stopped, "stopped by request")[0][1], name


async def test_a_training_job_left_by_a_crashed_launch_is_stopped_with_its_job(
    world: World,
) -> None:
    """The job was stopped while New, but a launcher had created its training job and died
    before recording it: the next listing shows that training job running, and the
    monitor stops it."""
    monitor = await _launch(world)
    event, name = await _stopped_while_queued(world, "a")
    await monitor.on_event(event, RECORD)
    await monitor.poll_once()
    assert world.backend.stopped == [name]
    assert (await world.store.get("a")).status is JobStatus.STOPPED


async def test_an_orphan_listed_before_its_jobs_stop_is_stopped(world: World) -> None:
    """The training job was listed (running, followed by nobody) before the stop of its
    queued job arrived: the monitor remembers what it listed and stops it on the next
    pass. A queued job stopped without any training job costs no call."""
    monitor = await _launch(world, "b")
    await _follow(world, monitor, "b")
    event, name = await _stopped_while_queued(world, "a")
    await monitor.poll_once()  # lists a's training job; nothing follows it
    await monitor.on_event(event, RECORD)
    plain, _ = await world.jobs.submit(parse_spec(spec("c")))
    stopped = await world.jobs.stop("c")
    await monitor.on_event(status_changed(plain, stopped, "stopped by request")[0][1], RECORD)
    world.clock.advance(1)
    await monitor.poll_once()
    assert world.backend.stopped == [name]
    assert world.backend.calls["StopTrainingJob"] == 1
