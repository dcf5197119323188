"""The stream's gap probe on a real broker: it tells a record from the commit marker of a
transactional producer and from an aborted record, as a read_committed reader sees them."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from stoker.stream.gaps import KafkaGapProbe
from stoker.stream.security import BrokerAuth

pytestmark = pytest.mark.integration


async def test_the_probe_finds_records_and_not_markers_or_aborted_records(
    kafka_bootstrap: str,
) -> None:
    topic = f"test.gaps.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"gaps-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed")  # offset 0; its marker is 1
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")  # offset 2; its marker is 3
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"last")  # offset 4; its marker is 5
    finally:
        await producer.stop()
    probe = KafkaGapProbe(kafka_bootstrap, BrokerAuth())
    found = {offset: await probe.holds_record(TP(topic, 0), offset) for offset in range(5)}
    assert found == {0: True, 1: False, 2: False, 3: False, 4: True}
