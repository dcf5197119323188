"""Topic namespacing: several stoker deployments (or test runs) on one Kafka cluster.

`PrefixedBus` wraps any EventBus and maps each logical topic (`stoker.jobs.lifecycle`) to
`<prefix><topic>` on the wire, and back in the records it hands out, so nothing above the
port knows about the prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, EventBus, RecordSource, ReportsLag, TopicPartition


class PrefixedBus:
    def __init__(self, inner: EventBus, prefix: str) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty (use the inner bus directly)")
        self._inner = inner
        self._prefix = prefix

    @property
    def inner(self) -> EventBus:
        return self._inner

    def physical(self, topic: str) -> str:
        return self._prefix + topic

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        await self._inner.ensure_topics([self.physical(t) for t in topics])

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self._inner.publish(self.physical(topic), event)

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._inner.publish_many(self.physical(topic), events)

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._inner.publish_raw(self.physical(topic), key, value)

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        inner = self._inner.source(
            self._prefix + group, [self.physical(t) for t in topics], background=background
        )
        return _PrefixedSource(inner, self._prefix)


class _PrefixedSource:
    def __init__(self, inner: RecordSource, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        records = await self._inner.fetch(max_records, timeout_s)
        # Built directly: dataclasses.replace costs several times more, once per record.
        return [
            BusRecord(
                r.topic.removeprefix(self._prefix), r.partition, r.offset, r.key, r.value, r.headers
            )
            for r in records
        ]

    def lag(self) -> Mapping[TopicPartition, int]:
        """The inner source's lag under the logical topic names (none if it tells none)."""
        if not isinstance(self._inner, ReportsLag):
            return {}
        prefix = self._prefix
        return {(t.removeprefix(prefix), p): n for (t, p), n in self._inner.lag().items()}

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        await self._inner.commit({(self._prefix + t, p): o for (t, p), o in positions.items()})

    async def close(self) -> None:
        await self._inner.close()
