"""A Kafka group member tells its lag from librdkafka's own figures (the high watermark its
fetches bring and the consumer's position), without asking the broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stoker.adapters.bus.kafka import KafkaBus
from stoker.ports.bus import BusRecord, ReportsLag

pytestmark = pytest.mark.integration

RECORDS = 10


async def test_lag_is_the_records_after_the_members_position(kafka_bootstrap: str) -> None:
    """Read one record at a time: the first lag the member reports and the records read by
    then add up to what the partition holds; once everything is read the lag drops to 0."""
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, partitions=1, replication=1)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for n in range(RECORDS):
            await bus.publish_raw(topic, "k", f"record {n}".encode())
        source = bus.source(group, [topic])
        assert isinstance(source, ReportsLag)
        read: list[BusRecord] = []
        seen: list[tuple[int, int]] = []
        try:
            async with asyncio.timeout(60):
                while len(read) < RECORDS:
                    batch = await source.fetch(1, 5.0)
                    read.extend(batch)
                    if batch:
                        await source.commit({(topic, 0): batch[-1].offset + 1})
                    lag = source.lag()
                    if (topic, 0) in lag and not seen:
                        seen.append((read[-1].offset + 1 if read else 0, lag[(topic, 0)]))
                # Nothing left to read: empty fetches keep refreshing until the lag is 0.
                while source.lag().get((topic, 0)) != 0:
                    assert await source.fetch(1, 0.2) == []
        finally:
            await source.close()
    finally:
        await bus.close()
    assert seen, "the member reported a lag while it read"
    ((position, behind),) = seen
    assert position + behind == RECORDS
