"""A member of the embedded log whose process died on this host gives its partitions up at
once: the next member need not wait for its lease to run out."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.core.events import CloudEvent, JobStatusChanged, decode_event
from stoker.core.job import JobStatus
from tests.support.events import TopicReader
from tests.support.processes import kill_when

LEASE_TTL_S = 60.0
"""Longer than the test waits: only a member known dead can hand its partitions over."""
WAIT_BOUND_S = 20.0
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event(key: str, seq: int) -> CloudEvent:
    data = JobStatusChanged(
        job_id=key,
        owner="takeover",
        version=seq + 1,
        from_status=JobStatus.NEW,
        to_status=JobStatus.LAUNCHING,
        attempt=0,
    )
    return CloudEvent.wrap(data, time=T0)


async def test_the_partitions_of_a_killed_member_are_taken_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    """A member in another process takes every partition and handles a batch, then is
    SIGKILLed before committing; a member here receives that batch again, and a record
    published afterwards, long before the 60 s lease would have expired."""
    path = tmp_path / "bus.sqlite3"
    bus = SqliteLogBus(path, lease_ttl_s=LEASE_TTL_S)
    await bus.start()
    topic, group = "takeover.events", "takeover-group"
    await bus.ensure_topics([topic])
    before = [event(f"key-{i % 8}", i) for i in range(40)]
    await bus.publish_many(topic, before)
    out, ready = tmp_path / "handled.txt", tmp_path / "ready.json"
    spec = {"kind": "sqlite", "path": str(path), "lease_ttl_s": LEASE_TTL_S}
    try:
        await kill_when(
            "tests.contract.bus_worker",
            [
                *("--spec", json.dumps(spec), "--group", group, "--topic", topic),
                *("--out", str(out), "--ready", str(ready)),
            ],
            ready.exists,
            tmp_path / "worker.log",
            what="the worker handling a batch",
        )
        handled = set(out.read_text().split())
        assert handled
        after = event("key-after", 0)
        await bus.publish(topic, after)
        async with TopicReader(bus, topic, group=group) as reader:
            await reader.read_until(
                lambda: handled | {after.id} <= {e.id for e in _events(reader)},
                WAIT_BOUND_S,
            )
    finally:
        await bus.close()


async def test_a_log_file_from_before_member_processes_were_recorded_still_serves(
    tmp_path: Path,
) -> None:
    """A file whose members table has no process columns (written by an earlier version)
    is upgraded when opened, and its groups deliver as before."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE members (grp TEXT NOT NULL, member TEXT NOT NULL,"
        " expires_at REAL NOT NULL, PRIMARY KEY (grp, member))"
    )
    conn.execute("INSERT INTO members VALUES ('old-group', 'gone-member', 0)")
    conn.commit()
    conn.close()
    bus = SqliteLogBus(path, lease_ttl_s=LEASE_TTL_S)
    await bus.start()
    try:
        await bus.publish("old.events", event("key-0", 0))
        async with TopicReader(bus, "old.events", group="old-group") as reader:
            await reader.read_until(lambda: len(reader.records) == 1, WAIT_BOUND_S)
    finally:
        await bus.close()


def _events(reader: TopicReader) -> list[CloudEvent]:
    return [decode_event(record.value) for record in reader.records]
