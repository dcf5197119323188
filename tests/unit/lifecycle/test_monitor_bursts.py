"""A burst of ends: failures described first, Completed and Stopped recorded from the listing
at once and described behind it, ended jobs amended with their description. Injected clock,
fake backend; no sleeps."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from stoker.core import topics
from stoker.core.events import JobAttemptFailed, JobCompleted, JobDescribed, JobStopped
from stoker.core.job import JobStatus
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.state_changes import StateChange
from stoker.ports.bus import BusRecord
from stoker.ports.training import TrainingJobStatus
from tests.support.events import TopicReader
from tests.unit.lifecycle.conftest import World, spec

RATE = 2.0
WAIT_S = 2.0
BUDGET = int(RATE * WAIT_S)
"""Ends a pass may describe before it records them (`MonitorConfig.describe_wait_s`)."""


async def _running(world: World, count: int, **config: object) -> tuple[Monitor, list[str]]:
    """`count` jobs launched and followed; returns the monitor and their training job names
    in job order (job-00, job-01, ...)."""
    ids = [f"job-{n:02d}" for n in range(count)]
    for job_id in ids:
        await world.jobs.submit(parse_spec(spec(job_id)))
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    settings = {"api_rate_per_s": RATE, "api_burst": RATE, "describe_wait_s": WAIT_S, **config}
    monitor = Monitor(
        world.transitioner,
        world.backend,
        world.clock,
        MonitorConfig(**settings),  # type: ignore[arg-type]
        sleep=world.sleep,
    )
    await monitor.recover()
    await monitor.poll_once()  # every job listed InProgress
    names = [next(n for n in world.backend.jobs if n.startswith(job_id)) for job_id in ids]
    return monitor, names


def _end(world: World, name: str, status: TrainingJobStatus, **facts: object) -> None:
    world.clock.advance(1)  # each end one second after the previous: ordered by age
    world.backend.set_status(name, status, **facts)  # type: ignore[arg-type]


async def _public(world: World) -> TopicReader:
    await world.transitioner.flush()
    reader = TopicReader(world.bus, topics.COMPLETED, topics.STOPPED, topics.LIFECYCLE)
    async with reader:
        await reader.read_all()
    return reader


async def test_ends_beyond_the_budget_are_recorded_at_once_without_a_describe(
    world: World,
) -> None:
    """Ten jobs complete together and the budget is four descriptions: the oldest four are
    described and recorded with their details, the other six recorded from the listing with
    `details_pending`, all in the same pass, for one listing and four descriptions."""
    monitor, names = await _running(world, 10)
    for name in names:
        _end(
            world, name, TrainingJobStatus.COMPLETED, billable_seconds=60, model_artifacts="s3://m"
        )
    world.backend.calls.clear()
    await monitor.poll_once()

    jobs = [await world.store.get(f"job-{n:02d}") for n in range(10)]
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    assert world.backend.calls == {"ListTrainingJobs": 1, "DescribeTrainingJob": BUDGET}
    described = [job.job_id for job in jobs if not job.details.get("details_pending")]
    assert described == [f"job-{n:02d}" for n in range(BUDGET)], "the oldest ends first"
    pending = [job for job in jobs if job.details.get("details_pending")]
    assert all("billable_seconds" not in job.details for job in pending)
    assert all(job.details["ended_at"] for job in pending), "the listing's end time is kept"
    completed = (await _public(world)).events_of(JobCompleted)
    assert sorted(e.job_id for e in completed if e.details_pending) == [
        job.job_id for job in pending
    ]
    assert monitor.describes_waiting == len(pending)


async def test_the_details_follow_as_an_amendment_and_a_described_event(world: World) -> None:
    """Described later, a job recorded from the listing gets its billable time and model
    artifacts in its details and in one JobDescribed event; its history keeps one end."""
    monitor, names = await _running(world, BUDGET + 2)
    for name in names:
        _end(
            world, name, TrainingJobStatus.COMPLETED, billable_seconds=60, model_artifacts="s3://m"
        )
    await monitor.poll_once()
    late = f"job-{BUDGET + 1:02d}"
    assert (await world.store.get(late)).details["details_pending"] is True

    assert await monitor.describe_queued() == 2
    job = await world.store.get(late)
    assert job.status is JobStatus.COMPLETED
    assert job.details["details_pending"] is False
    assert (job.details["billable_seconds"], job.details["model_artifacts"]) == (60, "s3://m")
    history = await world.store.history(late)
    assert [t.to_status for t in history].count(JobStatus.COMPLETED) == 1
    described = [e for e in (await _public(world)).events_of(JobDescribed) if e.job_id == late]
    assert [(e.status, e.billable_seconds, e.model_artifacts) for e in described] == [
        (JobStatus.COMPLETED, 60, "s3://m")
    ]
    assert await monitor.describe_queued() == 0, "nothing is described twice"


async def test_failures_are_described_first_and_wait_for_their_reason(world: World) -> None:
    """Completed ends come first in time, failures last: the budget goes to the failures
    (the retrier needs their reason), oldest first; a failure beyond the budget is not
    reported without its reason but queued ahead of every pending detail."""
    monitor, names = await _running(world, 8)
    for name in names[:3]:
        _end(world, name, TrainingJobStatus.COMPLETED, billable_seconds=60)
    for name in names[3:]:
        _end(world, name, TrainingJobStatus.FAILED, failure_reason="AlgorithmError: boom")
    await monitor.poll_once()

    reader = await _public(world)
    reported = sorted(e.job_id for e in reader.events_of(JobAttemptFailed))
    assert reported == [f"job-{n:02d}" for n in range(3, 3 + BUDGET)], "the oldest failures"
    assert all(
        e.failure_reason == "AlgorithmError: boom" for e in reader.events_of(JobAttemptFailed)
    )
    waiting = await world.store.get("job-07")
    assert waiting.status is JobStatus.IN_PROGRESS, "a failure is never recorded unexplained"
    assert [(await world.store.get(f"job-{n:02d}")).status for n in range(3)] == [
        JobStatus.COMPLETED
    ] * 3

    world.backend.described.clear()
    await monitor.describe_queued()
    assert world.backend.described == [names[7], *names[:3]], "the failure, then the details"
    reader = await _public(world)
    assert "job-07" in {e.job_id for e in reader.events_of(JobAttemptFailed)}


async def test_a_stopped_end_is_told_at_once_too(world: World) -> None:
    """A job stopped in a burst is recorded Stopped from the listing, its details following."""
    monitor, names = await _running(world, 2, describe_wait_s=0.0)
    _end(world, names[0], TrainingJobStatus.STOPPED, billable_seconds=5)
    await monitor.poll_once()
    assert world.backend.calls["DescribeTrainingJob"] == 0
    stopped = (await _public(world)).events_of(JobStopped)
    assert [(e.job_id, e.details_pending) for e in stopped] == [("job-00", True)]
    await monitor.describe_queued()
    assert (await world.store.get("job-00")).details["billable_seconds"] == 5


async def test_without_a_wait_budget_every_end_is_described_first(world: World) -> None:
    """`describe_wait_s=None` (the Lambda sweep): nothing is recorded without its description."""
    monitor, names = await _running(world, 12, describe_wait_s=None)
    for name in names:
        _end(world, name, TrainingJobStatus.COMPLETED, billable_seconds=1)
    await monitor.poll_once()
    jobs = [await world.store.get(f"job-{n:02d}") for n in range(12)]
    assert all(j.details.get("billable_seconds") == 1 for j in jobs)
    assert not any(j.details.get("details_pending") for j in jobs)
    assert monitor.describes_waiting == 0


async def test_a_restarted_monitor_describes_what_its_predecessor_left(world: World) -> None:
    """Ends recorded without their description by a monitor that then stopped are found by
    the next monitor's recovery and described."""
    monitor, names = await _running(world, 3, describe_wait_s=0.0)
    for name in names:
        _end(world, name, TrainingJobStatus.COMPLETED, billable_seconds=9)
    await monitor.poll_once()
    assert monitor.describes_waiting == 3

    successor = Monitor(
        world.transitioner,
        world.backend,
        world.clock,
        MonitorConfig(api_rate_per_s=RATE, api_burst=RATE),
        sleep=world.sleep,
    )
    await successor.recover()
    assert successor.describes_waiting == 3
    assert await successor.describe_queued() == 3
    jobs = [await world.store.get(f"job-{n:02d}") for n in range(3)]
    assert [j.details["billable_seconds"] for j in jobs] == [9, 9, 9]


async def test_recovery_reaches_back_only_as_far_as_configured(world: World) -> None:
    """Jobs created before `details_recovery_s` are not read again at start."""
    monitor, names = await _running(world, 1, describe_wait_s=0.0)
    _end(world, names[0], TrainingJobStatus.COMPLETED)
    await monitor.poll_once()
    world.clock.advance(timedelta(hours=2).total_seconds())
    successor = Monitor(
        world.transitioner,
        world.backend,
        world.clock,
        MonitorConfig(details_recovery_s=3600.0),
        sleep=world.sleep,
    )
    await successor.recover()
    assert successor.describes_waiting == 0


async def test_a_state_change_with_its_description_needs_no_api_call(world: World) -> None:
    """An EventBridge event carries the description: the end is recorded with its details
    and no DescribeTrainingJob; a repeat of it changes nothing."""
    monitor, names = await _running(world, 1)
    _end(
        world, names[0], TrainingJobStatus.COMPLETED, billable_seconds=33, model_artifacts="s3://x"
    )
    world.backend.calls.clear()
    change = StateChange(names[0], TrainingJobStatus.COMPLETED, world.backend.jobs[names[0]])
    record = BusRecord(topics.SAGEMAKER_STATE_CHANGES, 0, 0, names[0], b"{}")
    await monitor.on_state_change(change, record)
    await monitor.on_state_change(change, record)
    job = await world.store.get("job-00")
    assert (job.status, job.details["billable_seconds"], job.details["model_artifacts"]) == (
        JobStatus.COMPLETED,
        33,
        "s3://x",
    )
    assert world.backend.calls == {}


async def test_a_failure_event_without_its_reason_is_described(world: World) -> None:
    """A state change that reports Failed but lost its FailureReason costs one describe."""
    monitor, names = await _running(world, 1)
    _end(world, names[0], TrainingJobStatus.FAILED, failure_reason="CapacityError: none")
    described = world.backend.jobs[names[0]]
    trimmed = StateChange(
        names[0], TrainingJobStatus.FAILED, dataclasses.replace(described, failure_reason=None)
    )
    world.backend.calls.clear()
    await monitor.observe(
        trimmed.training_job_name, trimmed.status, description=trimmed.description
    )
    assert world.backend.calls == {"DescribeTrainingJob": 1}
    reader = await _public(world)
    assert [e.failure_reason for e in reader.events_of(JobAttemptFailed)] == ["CapacityError: none"]


def test_a_negative_wait_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="describe_wait_s"):
        MonitorConfig(describe_wait_s=-1.0)
