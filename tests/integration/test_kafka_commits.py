"""The Kafka source writes handled positions at an interval, and always when it goes idle.

`commit` only records positions until `commit_interval_ms` has passed; a fetch that comes
back empty writes whatever is pending, so a quiet consumer never sits on handled records.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from stoker.adapters.bus.kafka import KafkaBus, KafkaConfig
from stoker.adapters.bus.kafka.broker import retry_transient
from stoker.ports.bus import BusRecord

pytestmark = pytest.mark.integration


def _committed_now(bootstrap: str, group: str, topic: str) -> int | None:
    # Read from outside the group: no second client with the group's id runs next to the
    # member under test, so nothing can disturb its assignment.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    answer = admin.list_consumer_group_offsets([asked])[group].result(timeout=30)
    (position,) = answer.topic_partitions
    assert position.error is None, position.error
    offset = int(position.offset)
    # No committed position comes back as a negative sentinel (OFFSET_INVALID).
    return None if offset < 0 else offset


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    # A fresh admin client's first request can be lost with its bootstrap connection
    # (see KafkaBus.ensure_topics): asked again then, as stoker's own admin calls are.
    return await retry_transient(
        lambda: _committed_now(bootstrap, group, topic),
        "list group offsets",
        KafkaConfig(bootstrap),
    )


async def test_positions_wait_for_the_interval_and_are_written_when_idle(
    kafka_bootstrap: str,
) -> None:
    topic, group = f"commits-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, partitions=1, replication=1, commit_interval_ms=600_000)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for n in range(3):
            await bus.publish_raw(topic, "k", f"record {n}".encode())
        source = bus.source(group, [topic])
        records: list[BusRecord] = []
        while len(records) < 3:
            batch = await source.fetch(10, 5.0)
            records.extend(batch)
            await source.commit({(topic, 0): batch[-1].offset + 1} if batch else {})
        # Handled, but the interval has not passed: nothing is written yet.
        assert await _committed(kafka_bootstrap, group, topic) is None
        # The next fetch finds nothing and writes the pending position.
        assert await source.fetch(10, 0.5) == []
        assert await _committed(kafka_bootstrap, group, topic) == 3
        await source.close()
    finally:
        await bus.close()
