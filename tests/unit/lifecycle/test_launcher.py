"""The launcher: one CreateTrainingJob per job and attempt, backoff on transient errors."""

from __future__ import annotations

from typing import Any

import pytest

from stoker.core import topics
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.events import JobStatusChanged, decode_event
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.naming import training_job_name
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher, LauncherConfig, build_request
from stoker.lifecycle.outbox_events import status_changed
from stoker.ports.bus import BusRecord
from stoker.ports.training import InvalidRequest, ResourceLimitExceeded, Throttled
from tests.unit.lifecycle.conftest import World, spec
from tests.unit.lifecycle.fakes import FakeTrainingBackend

RECORD = BusRecord(topic="stoker.jobs.lifecycle", partition=0, offset=0, key="k", value=b"")


def _launcher(world: World, **config: object) -> Launcher:
    return Launcher(
        world.transitioner,
        world.backend,
        world.clock,
        LauncherConfig(**config),  # type: ignore[arg-type]
        sleep=world.sleep,
    )


async def test_new_job_is_launched_with_a_name_from_id_and_attempt(world: World) -> None:
    """A New job whose first CreateTrainingJob is accepted goes straight to Launched (no
    Launching write, ADR 0010), with the attempt, its name and instance type recorded; the
    request keeps the spec and gets the derived name."""
    await world.jobs.submit(parse_spec(spec()))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    job = await world.store.get("job-1")
    name = training_job_name("job-1", 1)
    assert job.status is JobStatus.LAUNCHED
    assert job.attempt == 1
    assert job.details["training_job_name"] == name
    assert job.details["instance_type"] == "ml.m5.large"
    history = await world.store.history("job-1")
    assert [line.to_status for line in history] == [JobStatus.NEW, JobStatus.LAUNCHED]
    (request,) = world.backend.requests
    assert request["TrainingJobName"] == name
    assert request["CheckpointConfig"] == {"S3Uri": "s3://bucket/ckpt/job-1"}
    # One event per change: the monitor follows the attempt from the Launched one (ADR 0012).
    await world.transitioner.flush()
    source = world.bus.source("test", [topics.LIFECYCLE])
    events = [decode_event(r.value).data for r in await source.fetch(100, 0.1)]
    assert all(isinstance(e, JobStatusChanged) for e in events)
    assert [(e.to_status, e.attempt) for e in events if isinstance(e, JobStatusChanged)] == [
        (JobStatus.NEW, 0),
        (JobStatus.LAUNCHED, 1),
    ]


async def test_throttling_and_quota_errors_back_off_then_launch(world: World) -> None:
    """Throttling and ResourceLimitExceeded are retried with growing waits, not failures."""
    world.backend.fail_next(
        "CreateTrainingJob", Throttled("slow down"), ResourceLimitExceeded("quota")
    )
    await world.jobs.submit(parse_spec(spec()))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    assert (await world.store.get("job-1")).status is JobStatus.LAUNCHED
    assert world.backend.calls["CreateTrainingJob"] == 3
    assert len(world.sleeps) == 2
    # The wait is recorded once, before the first backoff: a stop or a restart finds it.
    history = await world.store.history("job-1")
    assert [line.to_status for line in history] == [
        JobStatus.NEW,
        JobStatus.LAUNCHING,
        JobStatus.LAUNCHED,
    ]
    assert history[1].attempt == 1


async def test_invalid_request_fails_the_job_terminally(world: World) -> None:
    """A validation error from CreateTrainingJob ends the job as Failed with the reason."""
    world.backend.fail_next("CreateTrainingJob", InvalidRequest("RoleArn is malformed"))
    await world.jobs.submit(parse_spec(spec()))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    job = await world.store.get("job-1")
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == "ValidationException: RoleArn is malformed"
    assert (job.attempt, job.details["training_job_name"]) == (1, training_job_name("job-1", 1))


async def test_crash_between_create_and_store_write_launches_once(world: World) -> None:
    """A job left in Launching by a crash is finished on restart without a second job."""
    job, _ = await world.jobs.submit(parse_spec(spec()))
    name = training_job_name("job-1", 1)
    launching = await world.transitioner.move(
        job,
        JobChange(
            to_status=JobStatus.LAUNCHING,
            at=world.clock.now(),
            attempt=1,
            details={"training_job_name": name, "instance_type": "ml.m5.large"},
        ),
    )
    # The "previous process" got as far as CreateTrainingJob.
    await world.backend.create_training_job(build_request(launching, name, "ml.m5.large"))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    assert (await world.store.get("job-1")).status is JobStatus.LAUNCHED
    assert len(world.backend.requests) == 1
    assert launcher.admission.in_use("ml.m5.large") == 1


async def test_crash_after_the_first_create_of_a_new_job_launches_once(world: World) -> None:
    """A job still New because the process died between its first CreateTrainingJob and
    the Launched write: on restart the same name is derived again, the create finds the
    training job, and the job becomes Launched without a second one."""
    job, _ = await world.jobs.submit(parse_spec(spec()))
    name = training_job_name("job-1", 1)
    await world.backend.create_training_job(build_request(job, name, "ml.m5.large"))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    job = await world.store.get("job-1")
    assert (job.status, job.attempt, job.details["training_job_name"]) == (
        JobStatus.LAUNCHED,
        1,
        name,
    )
    assert len(world.backend.requests) == 1
    assert world.backend.calls["CreateTrainingJob"] == 2


async def test_a_job_stopped_while_create_is_retried_is_not_created(world: World) -> None:
    """A stop that lands while the launcher waits to retry CreateTrainingJob ends the
    retrying: no training job is created for a job nobody follows any more."""
    world.backend.fail_next("CreateTrainingJob", Throttled("slow down"))
    await world.jobs.submit(parse_spec(spec()))

    async def stop_during_the_wait(seconds: float) -> None:
        await world.jobs.stop("job-1")
        await world.sleep(seconds)

    launcher = Launcher(
        world.transitioner, world.backend, world.clock, LauncherConfig(), sleep=stop_during_the_wait
    )
    await launcher.recover()
    await launcher.drain()
    assert world.backend.calls["CreateTrainingJob"] == 1
    assert world.backend.requests == []
    assert (await world.store.get("job-1")).status is JobStatus.STOPPING


async def test_an_unreadable_store_between_create_tries_does_not_stop_the_launch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-read before a retry is a precaution: when the store cannot answer it, the
    launch goes on (the write after the create still refuses a job that moved)."""
    world.backend.fail_next("CreateTrainingJob", Throttled("slow down"))
    await world.jobs.submit(parse_spec(spec()))
    read = world.store.get
    failing = False

    async def get(job_id: str) -> JobRecord:
        nonlocal failing
        if failing:  # the one read the launcher makes between its tries
            failing = False
            raise InfrastructureUnavailable("store unreachable")
        return await read(job_id)

    async def store_down_during_the_wait(seconds: float) -> None:
        nonlocal failing
        failing = True
        await world.sleep(seconds)

    monkeypatch.setattr(world.store, "get", get)
    launcher = Launcher(
        world.transitioner,
        world.backend,
        world.clock,
        LauncherConfig(),
        sleep=store_down_during_the_wait,
    )
    await launcher.recover()
    await launcher.drain()
    assert world.backend.calls["CreateTrainingJob"] == 2
    assert (await world.store.get("job-1")).status is JobStatus.LAUNCHED


class _StoppedDuringCreate(FakeTrainingBackend):
    """While a CreateTrainingJob call is in flight the job is stopped: a New job ends as
    Stopped at once; a Launching one goes to Stopping, and the monitor, finding no training
    job yet, ends it as Stopped. Then the create succeeds. The first `refusals` calls are
    throttled (so the job is Launching when the stop comes)."""

    def __init__(self, world: World, refusals: int) -> None:
        super().__init__(world.clock)
        self._world = world
        self._refusals = refusals

    async def create_training_job(self, request: dict[str, Any]) -> str:
        if self._refusals:
            self._refusals -= 1
            raise Throttled("slow down")
        job = await self._world.jobs.stop("job-1")
        if job.status is JobStatus.STOPPING:
            await self._world.transitioner.move(
                job,
                JobChange(to_status=JobStatus.STOPPED, at=self._world.clock.now(), reason="none"),
            )
        return await super().create_training_job(request)


async def _launch_one_job(world: World, backend: FakeTrainingBackend) -> None:
    """Submit job-1, then let a launcher take it in (as after a restart) and finish."""
    await world.jobs.submit(parse_spec(spec()))
    launcher = Launcher(
        world.transitioner, backend, world.clock, LauncherConfig(), sleep=world.sleep
    )
    await launcher.recover()
    await launcher.drain()


@pytest.mark.parametrize("refusals", [0, 1], ids=["first-call", "after-a-retry"])
async def test_a_training_job_created_after_its_job_ended_is_stopped(
    world: World, refusals: int
) -> None:
    """The training job that a create racing a stop started is stopped by the launcher: it
    belongs to a job that has already ended, so nobody else would. Whether the job was New
    (first call) or Launching (a retried call) when the stop came."""
    backend = _StoppedDuringCreate(world, refusals)
    await _launch_one_job(world, backend)
    assert backend.stopped == [training_job_name("job-1", 1)]
    assert (await world.store.get("job-1")).status is JobStatus.STOPPED


async def test_a_throttled_stop_of_such_a_training_job_is_retried(world: World) -> None:
    """Nobody else knows that training job, so a throttled StopTrainingJob is tried again
    after a backoff instead of leaving it to run until its MaxRuntimeInSeconds."""
    backend = _StoppedDuringCreate(world, refusals=0)
    backend.fail_next("StopTrainingJob", Throttled("slow down"), Throttled("slow down"))
    await _launch_one_job(world, backend)
    assert backend.calls["StopTrainingJob"] == 3
    assert backend.stopped == [training_job_name("job-1", 1)]


async def test_a_stop_that_stays_throttled_is_given_up_after_eight_calls(world: World) -> None:
    """The retries are bounded: the job's record is final either way, and the training job
    ends at its MaxRuntimeInSeconds."""
    backend = _StoppedDuringCreate(world, refusals=0)
    backend.fail_next("StopTrainingJob", *[Throttled("slow down")] * 20)
    await _launch_one_job(world, backend)
    assert backend.calls["StopTrainingJob"] == 8
    assert backend.stopped == []
    assert (await world.store.get("job-1")).status is JobStatus.STOPPED


async def test_caps_hold_jobs_until_slots_free(world: World) -> None:
    """With a cap of 1 only one job launches; the other stays New until the first ends."""
    for job_id in ("a", "b"):
        await world.jobs.submit(parse_spec(spec(job_id)))
    launcher = _launcher(world, caps={"ml.m5.large": 1})
    await launcher.recover()
    await launcher.drain()
    statuses = {j: (await world.store.get(j)).status for j in ("a", "b")}
    assert sorted(statuses.values()) == [JobStatus.LAUNCHED, JobStatus.NEW]
    assert launcher.admission.waiting == 1


async def test_new_job_events_are_offered_in_order_and_a_failed_read_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New-job events return at once (the store is read in the background, a batch in one
    `get_many`, in event order); a batch whose read fails stays first in line and is
    launched once the store answers, still in order. An id the store does not know (a job
    gone meanwhile) is passed over."""
    events = []
    for job_id in ("a", "b", "c"):
        job, _ = await world.jobs.submit(parse_spec(spec(job_id)))
        events.append(status_changed(None, job, "submitted")[0][1])
    ghost = events[0].model_copy(
        update={"data": events[0].data.model_copy(update={"job_id": "ghost"})}
    )
    read_many = world.store.get_many
    reads: list[list[str]] = []

    async def flaky_get_many(job_ids: list[str]) -> dict[str, JobRecord]:
        reads.append(list(job_ids))
        if len(reads) == 1:
            raise InfrastructureUnavailable("store unreachable")
        return await read_many(job_ids)

    monkeypatch.setattr(world.store, "get_many", flaky_get_many)
    launcher = _launcher(world)
    for event in [events[0], ghost, *events[1:]]:
        await launcher.on_event(event, RECORD)
    assert world.backend.requests == []  # nothing was awaited inside the handler
    await launcher.drain()
    assert reads == [["a", "ghost", "b", "c"]] * 2
    assert [r["TrainingJobName"] for r in world.backend.requests] == [
        training_job_name(j, 1) for j in ("a", "b", "c")
    ]
    assert {(await world.store.get(j)).status for j in "abc"} == {JobStatus.LAUNCHED}
    assert len(world.sleeps) == 1


async def test_a_due_retry_is_launched_as_its_next_attempt_on_the_fallback_type(
    world: World,
) -> None:
    """A RetryScheduled job whose time has come goes straight to Launched with the next
    attempt's name and the instance type the retrier chose; its history shows no Launching
    line for either attempt (ADR 0010)."""
    job, _ = await world.jobs.submit(parse_spec(spec()))
    launcher = _launcher(world)
    await launcher.recover()
    await launcher.drain()
    launched = await world.store.get("job-1")
    waiting = await world.transitioner.move(
        launched,
        JobChange(
            to_status=JobStatus.RETRY_SCHEDULED,
            at=world.clock.now(),
            due_at=world.clock.now(),
            reason="CapacityError",
            details={"instance_type": "ml.m5.xlarge"},
        ),
    )
    # The retrier's event frees the first attempt's slot, as its consumer would deliver it.
    await launcher.on_event(status_changed(launched, waiting, "CapacityError")[0][1], RECORD)
    assert await launcher.due_pass() == 1
    await launcher.drain()
    job = await world.store.get("job-1")
    name = training_job_name("job-1", 2)
    assert (job.status, job.attempt, job.details["training_job_name"]) == (
        JobStatus.LAUNCHED,
        2,
        name,
    )
    assert world.backend.requests[-1]["TrainingJobName"] == name
    assert world.backend.requests[-1]["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    history = [line.to_status for line in await world.store.history("job-1")]
    assert JobStatus.LAUNCHING not in history
