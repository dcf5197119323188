"""PrefixedBus: topics and groups are namespaced on the wire and invisible above the port."""

from __future__ import annotations

from datetime import UTC, datetime

from stoker.adapters.bus.memory import MemoryBus
from stoker.bus.prefixed import PrefixedBus
from stoker.core.events import CloudEvent, JobRetryScheduled
from tests.support.buses import SourceRecordingBus

EVENT = CloudEvent.wrap(
    JobRetryScheduled(
        job_id="j",
        attempt=1,
        next_attempt_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
        reason="CapacityError",
    ),
    time=datetime(2026, 1, 1, tzinfo=UTC),
)


async def test_two_prefixes_on_one_bus_do_not_see_each_other() -> None:
    """A record published under prefix a. reaches a. consumers only, with its logical topic."""
    shared = MemoryBus()
    await shared.start()
    blue, green = PrefixedBus(shared, "blue."), PrefixedBus(shared, "green.")
    await blue.publish("jobs", EVENT)
    blue_source = blue.source("g", ["jobs"])
    green_source = green.source("g", ["jobs"])
    (record,) = await blue_source.fetch(10, 0.05)
    assert record.topic == "jobs"
    assert await green_source.fetch(10, 0.05) == []
    raw = shared.source("probe", ["blue.jobs"])
    assert len(await raw.fetch(10, 0.05)) == 1


async def test_commit_applies_to_the_prefixed_topic() -> None:
    """After a commit through the wrapper, a new member of the group starts after it."""
    shared = MemoryBus()
    await shared.start()
    bus = PrefixedBus(shared, "t.")
    await bus.publish("jobs", EVENT)
    first = bus.source("g", ["jobs"])
    (record,) = await first.fetch(10, 0.05)
    await first.commit({(record.topic, record.partition): record.offset + 1})
    await first.close()
    second = bus.source("g", ["jobs"])
    assert await second.fetch(10, 0.05) == []


async def test_a_background_member_stays_one_under_the_prefix() -> None:
    inner = SourceRecordingBus()
    await inner.start()
    bus = PrefixedBus(inner, "blue.")
    bus.source("lazy", ["jobs"], background=True)
    bus.source("eager", ["jobs"])
    assert inner.background == {"blue.lazy": True, "blue.eager": False}
