"""An in-process event bus with the delivery semantics of the real ones.

Used by unit tests of code above the port. Like the durable adapters it partitions by a
stable hash of the key, keeps committed positions per consumer group, splits partitions
between the members of a group, and hands a partition to a new member only after its
previous owner has let go of it (at its next fetch, when nothing is in flight).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence

from stoker.core.errors import StokerError
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, TopicPartition


def partition_for(key: str, partitions: int) -> int:
    """The partition of `key`: CRC-32 of its UTF-8 bytes, identical in every process.

    Python's `hash()` is salted per process, so it would send one key to different
    partitions after a restart and break per-key order.
    """
    return zlib.crc32(key.encode("utf-8")) % partitions


def desired_partitions(
    members: Sequence[str], me: str, partitions: Sequence[TopicPartition]
) -> set[TopicPartition]:
    """The partitions `me` should own: round robin over the sorted live members.

    Every member computes the same answer from the same member list, so no coordinator
    is needed; ownership itself is still taken through a lease or lock, never assumed.
    """
    ordered = sorted({*members, me})
    index = ordered.index(me)
    return {tp for i, tp in enumerate(sorted(partitions)) if i % len(ordered) == index}


class MemoryBus:
    """The in-process `EventBus`. Nothing survives the process; everything else matches."""

    def __init__(self, *, partitions: int = 8) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._partitions = partitions
        self._logs: dict[str, list[list[BusRecord]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._owners: dict[tuple[str, str, int], str] = {}
        self._members: dict[str, dict[str, _MemorySource]] = {}
        self._changed = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._notify()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._log(topic)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        self._check_open()
        for event in events:
            self._append(topic, event.subject, event.to_json())
        self._notify()

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        self._check_open()
        self._append(topic, key, value)
        self._notify()

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> _MemorySource:
        # Records are handed over the moment they are there: `background` changes nothing.
        member = _MemorySource(self, group, list(topics))
        self._members.setdefault(group, {})[member.member_id] = member
        self._notify()
        return member

    # Internal API of the member objects below.

    def _check_open(self) -> None:
        if self._closed:
            raise StokerError("the memory bus is closed")

    def _log(self, topic: str) -> list[list[BusRecord]]:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = [[] for _ in range(self._partitions)]
        return log

    def _append(self, topic: str, key: str, value: bytes) -> None:
        log = self._log(topic)
        partition = partition_for(key, self._partitions)
        records = log[partition]
        records.append(BusRecord(topic, partition, len(records), key, value, {}))

    def _notify(self) -> None:
        # Wake every waiting fetch at once, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()


class _MemorySource:
    """One member of a consumer group on a `MemoryBus`."""

    def __init__(self, bus: MemoryBus, group: str, topics: list[str]) -> None:
        self.member_id = uuid.uuid4().hex
        self._bus = bus
        self._group = group
        self._topics = topics
        self._positions: dict[TopicPartition, int] = {}
        self._cursor = 0
        self._closed = False

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        deadline = time.monotonic() + timeout_s
        while True:
            changed = self._bus._changed
            self._rebalance()
            batch = self._read(max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                # Yield once so a busy consumer never starves the rest of the loop.
                await asyncio.sleep(0)
                return batch
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return []

    def lag(self) -> Mapping[TopicPartition, int]:
        """Records after this member's read position in each partition it holds."""
        return {
            (topic, partition): len(self._bus._log(topic)[partition]) - position
            for (topic, partition), position in self._positions.items()
        }

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        for (topic, partition), offset in positions.items():
            key = (self._group, topic, partition)
            # A member that lost the partition must not move the new owner's position.
            if self._bus._owners.get(key) == self.member_id:
                self._bus._committed[key] = offset

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for topic, partition in self._positions:
            self._bus._owners.pop((self._group, topic, partition), None)
        self._positions.clear()
        self._bus._members.get(self._group, {}).pop(self.member_id, None)
        self._bus._notify()

    def _rebalance(self) -> None:
        owners = self._bus._owners
        members = list(self._bus._members.get(self._group, {}))
        every = [(t, p) for t in self._topics for p in range(len(self._bus._log(t)))]
        wanted = desired_partitions(members, self.member_id, every)
        released = False
        for tp in list(self._positions):
            if tp not in wanted:
                # Called at fetch time, when the previous batch is settled: safe to let go.
                del self._positions[tp]
                owners.pop((self._group, *tp), None)
                released = True
        for tp in wanted:
            key = (self._group, *tp)
            if tp not in self._positions and owners.get(key) is None:
                owners[key] = self.member_id
                self._positions[tp] = self._bus._committed.get(key, 0)
        if released:
            self._bus._notify()

    def _read(self, max_records: int) -> list[BusRecord]:
        if not self._positions:
            return []
        batch: list[BusRecord] = []
        owned = sorted(self._positions)
        # Start at a different partition each time so a busy one cannot starve the others.
        self._cursor += 1
        for tp in owned[self._cursor % len(owned) :] + owned[: self._cursor % len(owned)]:
            if len(batch) >= max_records:
                break
            records = self._bus._log(tp[0])[tp[1]]
            start = self._positions[tp]
            chunk = records[start : start + max_records - len(batch)]
            if chunk:
                batch.extend(chunk)
                self._positions[tp] = start + len(chunk)
        return batch
