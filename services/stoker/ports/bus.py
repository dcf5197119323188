"""The event bus port.

An adapter supplies two small things: a `Publisher` that makes records durable, and a
`RecordSource` that reads a consumer group's records and commits its positions. The
delivery rules (decode, validate, retry the handler, dead-letter, commit only after
success) live once, in `stoker.bus.consumer.Consumer`, for every adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stoker.core.events import CloudEvent


@dataclass(slots=True)
class BusRecord:
    """One record as read from a topic partition. Treat it as read-only: it is not frozen
    because a frozen dataclass's constructor cost about three times as much (1.1 against
    0.3 µs per record in a timeit on the development machine), and every record read is
    built once by the adapter and once more by a topic prefix."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


TopicPartition = tuple[str, int]


class Publisher(Protocol):
    async def publish(self, topic: str, event: CloudEvent) -> None:
        """Append one event, keyed by `event.subject`; returns once it is durable."""

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        """Append several events; returns once all are durable. Per-key order is kept."""

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        """Append bytes as they are (used for foreign producers and tests of bad input)."""


class RecordSource(Protocol):
    """A consumer group member's view of its topics."""

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        """Records not yet committed by the group, in order per partition.

        Waits at most `timeout_s` when none is ready. A record is fetched again after a
        restart unless its position was committed.
        """

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        """Record that every offset before `positions[tp]` is done for the group."""

    async def close(self) -> None:
        """Leave the group; uncommitted records go back to the group."""


@runtime_checkable
class ReportsLag(Protocol):
    """A record source that can tell, without I/O, how far its group is behind."""

    def lag(self) -> Mapping[TopicPartition, int]:
        """Records after the group's position in each partition this member holds, as last
        seen (the adapter refreshes it while it fetches, at most about once a second)."""


class EventBus(Publisher, Protocol):
    """A transport: publish, and open record sources for consumer groups."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist (no-op where topics are implicit)."""

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        """A new member of `group` reading `topics`; call `close()` when done.

        background: nothing waits on this member's records, so the bus may hold its fetches
        longer to gather more at once (fewer requests, fuller batches). Buses whose fetches
        do not wait for records to gather ignore it.
        """
