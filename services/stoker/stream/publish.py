"""Where the agent's records go: one port, a transactional Kafka sender and a fake."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import faust
from faust.transport.consumer import TransactionManager
from faust.types import TP


class Outputs(Protocol):
    """Publishes a record produced while handling the record at `source` (topic, partition).

    Returns an awaitable of the broker's acknowledgement, so a batch sends everything first
    and waits once."""

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        *,
        source: tuple[str, int],
        partition: int | None = None,
    ) -> Awaitable[object]: ...


class TransactionalOutputs:
    """Sends in the Kafka transaction of the source record's partition.

    Faust's own `Topic.send` picks the transaction from the *output* record's partition and
    only knows the app's own topics: a score for a pair read on partition 1 could ride in
    partition 3's transaction, or in none (faust-streaming issues 177 and 517). Here every
    output of a pair goes into the transaction that also commits that pair's offset, so a
    crash either keeps both or neither. The transactional id is the one Faust's
    `TransactionManager` starts for that partition (its `transactional_id_format`).
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        *,
        source: tuple[str, int],
        partition: int | None = None,
    ) -> Awaitable[object]:
        app = self._app
        if not app.in_transaction:
            fut: Awaitable[object] = await app.producer.send(
                topic, key, value, partition, None, None
            )
            return fut
        source_topic, source_partition = source
        manager = app.consumer.transactions
        assert isinstance(manager, TransactionManager)
        sent: Awaitable[object] = await manager.producer.send(
            topic,
            key,
            value,
            partition,  # the caller's choice (None: by key), as outside a transaction
            None,
            None,
            transactional_id=transactional_id(app, source_topic, source_partition),
        )
        return sent


def transactional_id(app: faust.App, topic: str, partition: int) -> str:
    """The id of the transaction Faust's `TransactionManager` runs for a source partition
    (its `transactional_id_format`: app id, topic group, partition)."""
    return f"{app.conf.id}-{app.assignor.group_for_topic(topic)}-{partition}"


def transactional_ids(app: faust.App, partitions: Iterable[TP]) -> set[str]:
    """The transactional ids of these topic partitions."""
    return {transactional_id(app, tp.topic, tp.partition) for tp in partitions}


@dataclass(frozen=True, slots=True)
class Sent:
    topic: str
    key: bytes
    value: bytes
    source: tuple[str, int]
    partition: int | None


@dataclass(slots=True)
class MemoryOutputs:
    """The fake: keeps every record sent, in order."""

    sent: list[Sent] = field(default_factory=list)

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        *,
        source: tuple[str, int],
        partition: int | None = None,
    ) -> Awaitable[object]:
        self.sent.append(Sent(topic, key, value, source, partition))
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
