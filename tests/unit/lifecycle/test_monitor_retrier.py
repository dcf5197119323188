"""Monitor and retrier: few API calls, end states recorded, failures classified and retried."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stoker.core import topics
from stoker.core.errors import EventRejected
from stoker.core.events import JobAttemptFailed
from stoker.core.job import JobStatus
from stoker.core.retry import RetryPolicy
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.retrier import Retrier
from stoker.lifecycle.state_changes import decode_state_change
from stoker.ports.training import Throttled, TrainingJobStatus
from tests.support.events import TopicReader
from tests.unit.lifecycle.conftest import World, spec


async def _launched(world: World, *job_ids: str, **extra: object) -> Monitor:
    for job_id in job_ids:
        await world.jobs.submit(parse_spec(spec(job_id, **extra)))
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    monitor = Monitor(
        world.transitioner,
        world.backend,
        world.clock,
        MonitorConfig(api_rate_per_s=2, api_burst=2),
        sleep=world.sleep,
    )
    await monitor.recover()
    return monitor


def _name(world: World, job_id: str) -> str:
    return next(n for n in world.backend.jobs if n.startswith(job_id))


async def test_list_pass_moves_jobs_and_describes_only_ended_ones(world: World) -> None:
    """One list call sees both jobs; only the completed one is described."""
    monitor = await _launched(world, "a", "b")
    world.clock.advance(1)
    world.backend.set_status(_name(world, "a"), TrainingJobStatus.COMPLETED, billable_seconds=42)
    await monitor.poll_once()
    a, b = await world.store.get("a"), await world.store.get("b")
    assert a.status is JobStatus.COMPLETED
    assert a.details["billable_seconds"] == 42
    assert b.status is JobStatus.IN_PROGRESS
    assert world.backend.calls["ListTrainingJobs"] == 1
    assert world.backend.calls["DescribeTrainingJob"] == 1


async def test_repeated_observation_is_a_no_op(world: World) -> None:
    """Seeing InProgress twice changes nothing the second time."""
    monitor = await _launched(world, "a")
    await monitor.poll_once()
    version = (await world.store.get("a")).version
    assert await monitor.observe(_name(world, "a"), TrainingJobStatus.IN_PROGRESS) == 0
    assert (await world.store.get("a")).version == version


async def test_throttled_poll_slows_down_and_does_not_fail(world: World) -> None:
    """A ThrottlingException is waited out (the monitor's retry policy backs off) and the
    call is made again: the pass does not fail."""
    monitor = await _launched(world, "a")
    world.backend.fail_next("ListTrainingJobs", Throttled("Rate exceeded"))
    await monitor.poll_once()
    assert world.backend.calls["ListTrainingJobs"] == 2
    assert (await world.store.get("a")).status is JobStatus.IN_PROGRESS
    assert world.sleeps, "the bucket made the retry wait"


async def _reported_failures(world: World, job_id: str, reason: str) -> list[JobAttemptFailed]:
    """Launch `job_id`, let its training job fail with `reason`, run one monitor pass, and
    return the JobAttemptFailed reports it published."""
    monitor = await _launched(world, job_id)
    world.clock.advance(1)
    world.backend.set_status(_name(world, job_id), TrainingJobStatus.FAILED, failure_reason=reason)
    await monitor.poll_once()
    async with TopicReader(world.bus, topics.LIFECYCLE) as reader:
        await reader.read_all()
    return reader.events_of(JobAttemptFailed)


async def test_failed_attempt_is_reported_to_the_retrier(world: World) -> None:
    """A Failed training job produces JobAttemptFailed with the FailureReason."""
    reports = await _reported_failures(world, "a", "CapacityError: none left")
    assert [r.failure_reason for r in reports] == ["CapacityError: none left"]


def _failure(job_id: str, attempt: int, reason: str) -> JobAttemptFailed:
    return JobAttemptFailed(
        job_id=job_id,
        attempt=attempt,
        training_job_name=f"{job_id}-{attempt}",
        instance_type="ml.m5.large",
        failure_reason=reason,
        failure_code=reason.split(":", 1)[0],
        observed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_capacity_failure_schedules_a_retry_on_the_fallback_type(world: World) -> None:
    """CapacityError: RetryScheduled with a due time and the next fallback instance type."""
    await _launched(world, "a", instance_type_fallbacks=["ml.m5.xlarge"])
    retrier = Retrier(world.transitioner, world.clock, policy=RetryPolicy(jitter=0))
    job = await retrier.decide(_failure("a", 1, "CapacityError: Unable to provision"))
    assert job is not None
    assert job.status is JobStatus.RETRY_SCHEDULED
    assert job.details["instance_type"] == "ml.m5.xlarge"
    assert job.due_at is not None
    assert (job.due_at - world.clock.now()).total_seconds() == 30
    assert await world.store.due(world.clock.now()) == []
    world.clock.advance(30)
    assert [j.job_id for j in await world.store.due(world.clock.now())] == ["a"]


async def test_algorithm_error_is_terminal_and_repeats_are_ignored(world: World) -> None:
    """AlgorithmError ends the job as Failed; the same report again changes nothing."""
    await _launched(world, "a")
    retrier = Retrier(world.transitioner, world.clock)
    failure = _failure("a", 1, "AlgorithmError: division by zero")
    job = await retrier.decide(failure)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert await retrier.decide(failure) is None


async def test_retries_stop_at_the_policy_maximum(world: World) -> None:
    """After max_attempts the job fails terminally even though the error is retriable."""
    await _launched(world, "a", retry={"max_attempts": 1})
    retrier = Retrier(world.transitioner, world.clock)
    job = await retrier.decide(_failure("a", 1, "CapacityError: none"))
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert "gave up after 1 attempt(s)" in str((await world.store.history("a"))[-1].reason)


async def test_a_failure_reported_before_a_stop_still_ends_the_job(world: World) -> None:
    """The monitor reports a failed attempt while the job is Launched, then a stop arrives
    before the retrier decides. The monitor no longer follows the attempt and SageMaker
    will not stop an ended job, so the retrier ends the job: Failed, with the reason, once.
    (Seen in the fault test under throttling: the job stayed Stopping for good.)"""
    reports = await _reported_failures(world, "a", "CapacityError: none left")
    assert len(reports) == 1
    assert (await world.jobs.stop("a")).status is JobStatus.STOPPING

    retrier = Retrier(world.transitioner, world.clock, policy=RetryPolicy(jitter=0))
    job = await retrier.decide(reports[0])
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.failure_reason == "CapacityError: none left"
    assert (await world.store.history("a"))[-1].reason == "failed while stopping"
    assert await retrier.decide(reports[0]) is None
    assert (await world.store.get("a")).version == job.version


async def test_a_report_of_another_attempt_leaves_a_stopping_job_alone(world: World) -> None:
    """Only the current attempt's failure ends a Stopping job (the job is on attempt 1)."""
    await _launched(world, "a")
    await world.jobs.stop("a")
    retrier = Retrier(world.transitioner, world.clock)
    assert await retrier.decide(_failure("a", 2, "CapacityError: none")) is None
    assert (await world.store.get("a")).status is JobStatus.STOPPING


async def test_state_change_events_move_jobs_without_polling(world: World) -> None:
    """A forwarded EventBridge state change completes a job with one Describe and no List."""
    monitor = await _launched(world, "a")
    name = _name(world, "a")
    world.backend.set_status(name, TrainingJobStatus.COMPLETED, billable_seconds=7)
    raw = orjson.dumps(
        {
            "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker",
            "detail": {"TrainingJobName": name, "TrainingJobStatus": "Completed"},
        }
    )
    change = decode_state_change(raw)
    assert await monitor.observe(change.training_job_name, change.status) == 1
    assert await monitor.observe(change.training_job_name, change.status) == 0
    assert (await world.store.get("a")).status is JobStatus.COMPLETED
    assert world.backend.calls["ListTrainingJobs"] == 0
    assert world.backend.calls["DescribeTrainingJob"] == 1


def test_malformed_state_change_is_rejected_with_the_field() -> None:
    """A state change without a job name is rejected naming the field (it is dead-lettered)."""
    with pytest.raises(EventRejected, match=r"detail\.TrainingJobName"):
        decode_state_change(b'{"detail-type": "SageMaker Training Job State Change", "detail": {}}')
