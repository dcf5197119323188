"""A consumer process for the crash test: handles one batch, then stops just before commit.

Run as `python -m tests.contract.bus_worker --spec JSON --group G --topic T --out FILE
--ready FILE` from the repository root. It runs the real `Consumer` on the real adapter;
the only difference is that its record source, when asked to commit, first writes the
ready file and then waits forever. The handler appends each event id to the out file
before returning, so at ready time the out file lists exactly the handled batch, none of
it committed. The test then kills the process with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from stoker.bus.consumer import Consumer, ConsumerConfig
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, EventBus, RecordSource, TopicPartition
from tests.contract.bus_factories import bus_from_spec


class _HangBeforeCommit:
    """A record source that never commits: it signals readiness and blocks instead."""

    def __init__(self, inner: RecordSource, ready: Path) -> None:
        self._inner = inner
        self._ready = ready

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        return await self._inner.fetch(max_records, timeout_s)

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        # Written aside and renamed, so the test never reads a half-written file.
        pending = self._ready.with_suffix(".tmp")
        pending.write_text(json.dumps({f"{t}/{p}": o for (t, p), o in positions.items()}))
        pending.replace(self._ready)
        await asyncio.Event().wait()

    async def close(self) -> None:
        await self._inner.close()


class _Bus:
    """The real bus, except that its record sources hang before committing."""

    def __init__(self, inner: EventBus, ready: Path) -> None:
        self._inner = inner
        self._ready = ready

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        await self._inner.ensure_topics(topics)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self._inner.publish(topic, event)

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._inner.publish_many(topic, events)

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._inner.publish_raw(topic, key, value)

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        inner = self._inner.source(group, topics, background=background)
        return _HangBeforeCommit(inner, self._ready)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True, help="JSON for bus_from_spec")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ready", required=True, type=Path)
    args = parser.parse_args()

    inner = bus_from_spec(json.loads(args.spec))
    await inner.start()
    bus = _Bus(inner, args.ready)
    out = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        # One write per line: a kill cannot leave half a line behind.
        os.write(out, f"{event.id}\n".encode())

    consumer = Consumer.for_events(
        bus, args.group, [args.topic], handle, config=ConsumerConfig(poll_timeout_s=0.2)
    )
    await consumer.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
