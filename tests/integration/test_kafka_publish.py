"""Publishing and fetching on Kafka: calls in flight together keep per-key order, a record
the client refuses fails the whole call with a stoker error naming the topic, and a fetch
hands over what is there instead of waiting out its timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from stoker.adapters.bus.kafka import KafkaBus
from stoker.core.errors import StokerError

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus_and_topic(kafka_bootstrap: str) -> AsyncIterator[tuple[KafkaBus, str]]:
    topic = f"publish-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, partitions=3, replication=1)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        yield bus, topic
    finally:
        await bus.close()


async def test_calls_in_flight_together_keep_per_key_order(
    bus_and_topic: tuple[KafkaBus, str],
) -> None:
    bus, topic = bus_and_topic
    # Calls started together, as the publishing task and the relay may do: their records
    # are handed to the producer in call order.
    await asyncio.gather(*(bus.publish_raw(topic, f"k{n % 3}", f"{n}".encode()) for n in range(60)))
    member = bus.source(f"g-{topic}", [topic])
    seen: dict[str, list[int]] = {}
    async with asyncio.timeout(120):
        while sum(len(v) for v in seen.values()) < 60:
            for record in await member.fetch(500, 5.0):
                seen.setdefault(record.key, []).append(int(record.value))
    assert {key: values == sorted(values) for key, values in seen.items()} == {
        "k0": True,
        "k1": True,
        "k2": True,
    }
    await member.close()


async def test_a_record_the_client_refuses_fails_the_call(
    bus_and_topic: tuple[KafkaBus, str],
) -> None:
    bus, topic = bus_and_topic
    too_large = b"x" * (2 * 1024 * 1024)  # over the producer's message.max.bytes
    with pytest.raises(StokerError, match=f"publish to {topic}") as caught:
        await bus.publish_raw(topic, "k", too_large)
    assert "MSG_SIZE_TOO_LARGE" in str(caught.value)
    await bus.publish_raw(topic, "k", b"fits")  # the producer is still usable


async def test_a_fetch_returns_what_is_there_without_waiting_out_its_timeout(
    bus_and_topic: tuple[KafkaBus, str],
) -> None:
    """A fetch asks for up to 500 records with a ten-minute wait; three are there, so it
    hands them over instead of waiting for more (librdkafka's `consume(n, timeout)` alone
    would hold them until it had 500 or the ten minutes were up)."""
    bus, topic = bus_and_topic
    for n in range(3):
        await bus.publish_raw(topic, f"k{n}", b"x")
    member = bus.source(f"g-{topic}", [topic])
    got: list[str] = []
    async with asyncio.timeout(120):  # joining the group takes seconds, not minutes
        while len(got) < 3:
            got += [record.key for record in await member.fetch(500, 600.0)]
    assert sorted(got) == ["k0", "k1", "k2"]
    await member.close()


async def test_records_that_arrived_together_are_handed_over_at_once_in_order(
    kafka_bootstrap: str,
) -> None:
    """Ten records sit in one partition before the member joins, so the broker's first
    answer brings all ten: a fetch of one takes the first, and the next fetch hands over
    the other nine at once, in offset order, without waiting for more."""
    topic = f"held-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, partitions=1, replication=1)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for n in range(10):
            await bus.publish_raw(topic, "k", f"{n}".encode())
        member = bus.source(f"g-{topic}", [topic])
        async with asyncio.timeout(120):  # joining the group takes seconds
            first = await member.fetch(1, 60.0)
        assert [r.value for r in first] == [b"0"]
        async with asyncio.timeout(30):  # well under the fetch's own 600 s
            rest = await member.fetch(100, 600.0)
        assert [r.value for r in rest] == [f"{n}".encode() for n in range(1, 10)]
        assert [r.offset for r in rest] == list(range(1, 10))
        await member.close()
    finally:
        await bus.close()
