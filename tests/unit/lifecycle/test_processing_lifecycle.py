"""Processing jobs in the lifecycle: the launcher creates processing jobs, the monitor lists,
describes and stops them through the processing API, the retrier retries them on the
fallback instance type; training-only work makes no processing call at all."""

from __future__ import annotations

from typing import Any

from stoker.core import topics
from stoker.core.events import JobAttemptFailed, decode_event
from stoker.core.job import JobStatus
from stoker.core.retry import RetryPolicy
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.retrier import Retrier
from stoker.ports.training import TrainingJobStatus
from tests.support.events import TopicReader
from tests.unit.lifecycle.conftest import World, spec


def processing(job_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "owner": "ana",
        "kind": "processing",
        "processing": {
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "AppSpecification": {"ImageUri": "img", "ContainerEntrypoint": ["python", "p.py"]},
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "VolumeSizeInGB": 1,
                }
            },
        },
        **extra,
    }


def _monitor(world: World) -> Monitor:
    return Monitor(
        world.transitioner,
        world.backend,
        world.clock,
        MonitorConfig(api_rate_per_s=100, api_burst=100),
        sleep=world.sleep,
    )


async def _launch(world: World, *bodies: dict[str, Any]) -> Launcher:
    for body in bodies:
        await world.jobs.submit(parse_spec(body))
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    return launcher


async def _feed(world: World, monitor: Monitor, reader: TopicReader) -> None:
    """Hand the monitor every lifecycle event published since the last feed, as its
    consumer would."""
    for record in await reader.read_all():
        await monitor.on_event(decode_event(record.value), record)
    reader.records.clear()


async def test_a_processing_job_is_launched_followed_and_completed(world: World) -> None:
    """CreateProcessingJob with the attempt's name; the monitor, told by the Launched event
    that the job is a processing job, lists and describes it through the processing API."""
    monitor = _monitor(world)
    await monitor.recover()
    async with TopicReader(world.bus, topics.LIFECYCLE) as reader:
        await _launch(world, processing("split"))
        assert list(world.backend.processing) == ["split-1"]
        assert world.backend.jobs == {}
        await _feed(world, monitor, reader)
        await monitor.poll_once()
        assert (await world.store.get("split")).status is JobStatus.IN_PROGRESS
        world.clock.advance(1)
        world.backend.set_status("split-1", TrainingJobStatus.COMPLETED, billable_seconds=3)
        await monitor.poll_once()
        await monitor.describe_queued()
    job = await world.store.get("split")
    assert job.status is JobStatus.COMPLETED
    assert job.details["training_job_name"] == "split-1"
    assert job.details["billable_seconds"] == 3
    assert world.backend.calls["DescribeTrainingJob"] == 0
    assert world.backend.calls["ListProcessingJobs"] == 2


async def test_a_failed_processing_attempt_is_retried_as_a_processing_job(world: World) -> None:
    """The failure is described through DescribeProcessingJob and reported; a capacity
    failure schedules a retry on the fallback instance type, launched as CreateProcessingJob."""
    await _launch(world, processing("split", instance_type_fallbacks=["ml.m5.xlarge"]))
    monitor = _monitor(world)
    await monitor.recover()
    world.clock.advance(1)
    world.backend.set_status(
        "split-1", TrainingJobStatus.FAILED, failure_reason="CapacityError: none left"
    )
    await monitor.poll_once()
    async with TopicReader(world.bus, topics.LIFECYCLE) as reader:
        await reader.read_all()
    [report] = reader.events_of(JobAttemptFailed)
    assert report.failure_reason == "CapacityError: none left"
    assert world.backend.calls["DescribeProcessingJob"] == 1
    retrier = Retrier(world.transitioner, world.clock, policy=RetryPolicy(jitter=0))
    job = await retrier.decide(report)
    assert job is not None
    assert job.status is JobStatus.RETRY_SCHEDULED
    world.clock.advance(60)
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    retried = world.backend.requests[-1]
    assert retried["ProcessingJobName"] == "split-2"
    assert retried["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"


async def test_stopping_a_processing_job_calls_stop_processing_job(world: World) -> None:
    """A stop of a running processing job: Stopping, StopProcessingJob, then Stopped."""
    await _launch(world, processing("split"))
    monitor = _monitor(world)
    await monitor.recover()
    async with TopicReader(world.bus, topics.LIFECYCLE) as reader:
        await reader.read_all()
        reader.records.clear()
        await world.jobs.stop("split")
        await _feed(world, monitor, reader)
    await monitor.poll_once()
    assert world.backend.calls["StopProcessingJob"] == 1
    assert world.backend.calls["StopTrainingJob"] == 0
    world.clock.advance(1)
    world.backend.set_status("split-1", TrainingJobStatus.STOPPED)
    await monitor.poll_once()
    await monitor.describe_queued()
    assert (await world.store.get("split")).status is JobStatus.STOPPED


async def test_training_only_work_makes_no_processing_call(world: World) -> None:
    """With no processing job followed, a pass lists training jobs only."""
    await _launch(world, spec("train"))
    monitor = _monitor(world)
    await monitor.recover()
    world.clock.advance(1)
    world.backend.set_status("train-1", TrainingJobStatus.COMPLETED)
    await monitor.poll_once()
    assert (await world.store.get("train")).status is JobStatus.COMPLETED
    assert world.backend.calls["ListTrainingJobs"] == 1
    assert world.backend.calls["ListProcessingJobs"] == 0
