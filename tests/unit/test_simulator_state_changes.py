"""The simulator publishes SageMaker's state-change events at the times its jobs change."""

from __future__ import annotations

from stoker.adapters.bus.memory import MemoryBus
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.lifecycle.state_changes import decode_state_change
from stoker.ports.training import TrainingJobStatus as S
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.faults import DurationSpec, FaultConfig
from stoker.simulator.state_changes import StateChangeFeed
from tests.support.events import TopicReader


def request(name: str) -> dict[str, object]:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/x",
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "Tags": [{"Key": "stoker:job-id", "Value": name.rsplit("-", 1)[0]}],
    }


async def changes(bus: MemoryBus) -> list[tuple[str, S, str | None]]:
    async with TopicReader(bus, topics.SAGEMAKER_STATE_CHANGES) as reader:
        records = await reader.read_all()
    return [
        (c.training_job_name, c.status, c.description.secondary_status if c.description else None)
        for c in (decode_state_change(r.value) for r in records)
    ]


async def test_each_change_goes_out_once_when_its_time_comes() -> None:
    """A job's start, its secondary statuses and its end, each published once, no earlier
    than it happens, with the description as of that change."""
    clock = FakeClock()
    engine = SimulatedSageMaker(
        FaultConfig(duration=DurationSpec(kind="fixed", seconds=100), startup_s=10), clock
    )
    bus = MemoryBus()
    feed = StateChangeFeed(engine, bus)
    engine.create_training_job(request("exp-1-1"))
    assert await feed.publish_due() == 1
    clock.advance(10)
    assert await feed.publish_due() == 2  # LaunchingMLInstances at 5 s, Training at 10 s
    assert await feed.publish_due() == 0
    clock.advance(100)
    await feed.publish_due()
    assert await changes(bus) == [
        ("exp-1-1", S.IN_PROGRESS, "Starting"),
        ("exp-1-1", S.IN_PROGRESS, "LaunchingMLInstances"),
        ("exp-1-1", S.IN_PROGRESS, "Training"),
        ("exp-1-1", S.COMPLETED, "Completed"),
    ]
    async with TopicReader(bus, topics.SAGEMAKER_STATE_CHANGES) as reader:
        [*_, last] = await reader.read_all()
    end = decode_state_change(last.value).description
    assert end is not None
    assert end.billable_seconds == 100
    assert end.model_artifacts == "s3://b/out/exp-1-1/output/model.tar.gz"


async def test_a_stopped_job_reports_its_stop_not_the_end_it_would_have_had() -> None:
    clock = FakeClock()
    engine = SimulatedSageMaker(
        FaultConfig(duration=DurationSpec(kind="fixed", seconds=100), startup_s=0, stop_s=5),
        clock,
    )
    bus = MemoryBus()
    feed = StateChangeFeed(engine, bus)
    engine.create_training_job(request("exp-2-1"))
    clock.advance(20)
    await feed.publish_due()
    engine.stop_training_job({"TrainingJobName": "exp-2-1"})
    clock.advance(500)
    await feed.publish_due()
    assert [(s, secondary) for _, s, secondary in await changes(bus)] == [
        (S.IN_PROGRESS, "Starting"),
        (S.STOPPING, "Stopping"),
        (S.STOPPED, "Stopped"),
    ]
