"""The embedded log, the in-memory bus and a topic prefix tell a member's lag: the records
after its position in each partition it holds."""

from __future__ import annotations

from pathlib import Path

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.bus.prefixed import PrefixedBus
from stoker.ports.bus import EventBus, ReportsLag


async def lag_after_reading(bus: EventBus, topic: str, published: int, read: int) -> object:
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        for n in range(published):
            await bus.publish_raw(topic, "one-key", f"record {n}".encode())
        source = bus.source("lagging", [topic])
        assert isinstance(source, ReportsLag)
        try:
            taken = await source.fetch(read, 1.0)
            assert len(taken) == read
            return dict(source.lag())
        finally:
            await source.close()
    finally:
        await bus.close()


async def test_the_sqlite_log_reports_the_records_left_after_a_fetch(tmp_path: Path) -> None:
    bus = SqliteLogBus(tmp_path / "bus.sqlite3", partitions=1)
    assert await lag_after_reading(bus, "t", published=10, read=3) == {("t", 0): 7}


async def test_the_memory_bus_reports_the_records_left_after_a_fetch() -> None:
    bus = MemoryBus(partitions=1)
    assert await lag_after_reading(bus, "t", published=10, read=4) == {("t", 0): 6}


async def test_a_prefixed_bus_reports_the_lag_under_the_logical_topic(tmp_path: Path) -> None:
    bus = PrefixedBus(SqliteLogBus(tmp_path / "bus.sqlite3", partitions=1), "staging.")
    assert await lag_after_reading(bus, "t", published=5, read=5) == {("t", 0): 0}
