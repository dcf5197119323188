"""Whether a jump forward in a pairs partition skipped a record.

Right after a recovery Faust sometimes hands the stream a partition's records with one or
two missing (its consumer dropped them while the flow was held). A partition's offsets also
jump where there is no record to read: the commit and abort markers of a transactional
producer, aborted records. `KafkaGapProbe` reads the offset itself, as a `read_committed`
consumer, to tell the two apart; the agent reads a skipped record again.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from stoker.stream.security import BrokerAuth


class GapProbe(Protocol):
    async def holds_record(self, tp: TP, offset: int) -> bool:
        """Whether a `read_committed` reader gets a record at exactly `offset` of `tp`."""
        ...


class KafkaGapProbe:
    """Asks the broker, with a consumer of no group that reads one record."""

    def __init__(self, bootstrap: str, auth: BrokerAuth, timeout_s: float = 30.0) -> None:
        self._bootstrap = bootstrap
        self._auth = auth
        self._timeout_s = timeout_s

    async def holds_record(self, tp: TP, offset: int) -> bool:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **self._auth.aiokafka(),
        )
        await consumer.start()
        try:
            partition = TopicPartition(tp.topic, tp.partition)
            consumer.assign([partition])
            consumer.seek(partition, offset)
            # The caller saw a record after `offset`, so there is one to read.
            async with asyncio.timeout(self._timeout_s):
                record = await consumer.getone(partition)
            return bool(record.offset == offset)
        finally:
            await consumer.stop()


class NoGaps:
    """The fake: every jump forward is markers, nothing to read again."""

    async def holds_record(self, tp: TP, offset: int) -> bool:
        return False
