"""The embedded log's statements: what its bus and members run on the file's threads
(`look` on the reader's, the rest on the writer's, inside its group transaction). See
`sqlite_log` for the tables' meaning and the membership rules.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from stoker.adapters.bus.memory import desired_partitions, partition_for
from stoker.adapters.processes import ProcessRef, is_alive
from stoker.ports.bus import BusRecord, TopicPartition


@dataclass(frozen=True, slots=True)
class PollRequest:
    """One member's state, sent to the reader thread for a fetch round trip."""

    group: str
    member: str
    topics: list[str]
    owned: dict[TopicPartition, int]
    last_version: int
    force: bool
    max_records: int
    cursor: int
    lease_ttl_s: float
    host: str
    """`stoker.adapters.processes.host_id()` of the member's process."""
    process: ProcessRef
    want_heads: bool = False
    """Also read the next offset of each partition held (for the lag, about once a second)."""


@dataclass(frozen=True, slots=True)
class Poll:
    """What one fetch round trip to the database brought back."""

    skipped: bool
    """Nothing changed since the member's last look (`PRAGMA data_version`)."""
    version: int
    owned: dict[TopicPartition, int]
    records: list[BusRecord]
    needs_sync: bool = False
    """The member must join, renew, give up or take partitions (a write) first."""
    heads: dict[TopicPartition, int] | None = None
    """The next offset of each partition held, when asked for (`want_heads`)."""


def _headers(raw: str) -> dict[str, str]:
    if raw == "{}":
        return {}
    decoded = orjson.loads(raw)
    return {str(k): str(v) for k, v in decoded.items()}


def _partitions(db: sqlite3.Connection, topic: str) -> int | None:
    row = db.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
    return None if row is None else int(row[0])


def ensure_topic(db: sqlite3.Connection, topic: str, partitions: int) -> int:
    """The topic's partition count, fixing it at `partitions` if the topic is new."""
    db.execute(
        "INSERT OR IGNORE INTO topics (topic, partitions) VALUES (?, ?)", (topic, partitions)
    )
    found = _partitions(db, topic)
    assert found is not None  # just inserted, in this transaction
    return found


def append(
    db: sqlite3.Connection, topic: str, items: list[tuple[str, bytes]], partitions: int
) -> None:
    count = ensure_topic(db, topic, partitions)
    by_partition: dict[int, list[tuple[str, bytes]]] = {}
    for key, value in items:
        by_partition.setdefault(partition_for(key, count), []).append((key, value))
    now = time.time()
    for partition, chunk in by_partition.items():
        row = db.execute(
            "SELECT next_offset FROM heads WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        head = int(row[0]) if row else 0
        db.executemany(
            "INSERT INTO records (topic, partition, offset, key, value, headers, ts)"
            " VALUES (?, ?, ?, ?, ?, '{}', ?)",
            [(topic, partition, head + i, key, value, now) for i, (key, value) in enumerate(chunk)],
        )
        db.execute(
            "INSERT INTO heads (topic, partition, next_offset) VALUES (?, ?, ?)"
            " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            (topic, partition, head + len(chunk)),
        )


_ALIVE_FOR_S = 1.0
"""How long a member's process, once seen running, is taken to run without looking again:
fetches look at the membership often, and a dead member's partitions may wait that long."""
_seen_alive: dict[ProcessRef, float] = {}


def _gone(process: ProcessRef) -> bool:
    now = time.monotonic()
    if now - _seen_alive.get(process, -_ALIVE_FOR_S) < _ALIVE_FOR_S:
        return False
    if is_alive(process):
        _seen_alive[process] = now
        return False
    _seen_alive.pop(process, None)
    return True


def _dead_members(db: sqlite3.Connection, ask: PollRequest) -> set[str]:
    """Members of the group whose process ran on this host and has exited: their leases
    are free now, not when they expire."""
    rows = db.execute(
        "SELECT member, pid, pid_started FROM members"
        " WHERE grp = ? AND host = ? AND pid IS NOT NULL AND pid_started IS NOT NULL",
        (ask.group, ask.host),
    )
    return {
        str(member)
        for member, pid, started in rows
        if (process := ProcessRef(int(pid), float(started))) != ask.process and _gone(process)
    }


@dataclass(frozen=True, slots=True)
class _Membership:
    """What a member must write to hold its share of the partitions."""

    join: bool
    release: list[TopicPartition]
    acquire: list[TopicPartition]

    @property
    def changes(self) -> bool:
        return self.join or bool(self.release) or bool(self.acquire)


def _membership(
    db: sqlite3.Connection, ask: PollRequest, every: list[TopicPartition], now: float
) -> _Membership:
    group, member = ask.group, ask.member
    dead = _dead_members(db, ask)
    live = [
        str(m)
        for (m,) in db.execute(
            "SELECT member FROM members WHERE grp = ? AND expires_at > ?", (group, now)
        )
        if m not in dead
    ]
    leases = {
        (str(t), int(p)): (str(m), float(e))
        for t, p, m, e in db.execute(
            "SELECT topic, partition, member, expires_at FROM leases WHERE grp = ?", (group,)
        )
    }
    wanted = desired_partitions(live, member, every)
    release = [tp for tp, (m, _) in leases.items() if m == member and tp not in wanted]
    acquire = [
        tp
        for tp in wanted
        if tp not in leases
        or leases[tp][1] <= now
        or leases[tp][0] in dead
        or (leases[tp][0] == member and leases[tp][1] <= now + ask.lease_ttl_s / 3)
    ]
    return _Membership(member not in live, release, acquire)


def look(db: sqlite3.Connection, ask: PollRequest) -> Poll:
    """A fetch's read: skipped when nothing changed; otherwise the partitions the member
    holds, its positions in them and the records after those."""
    version = int(db.execute("PRAGMA data_version").fetchone()[0])
    if not ask.force and version == ask.last_version:
        return Poll(True, version, ask.owned, [])
    counts = {topic: _partitions(db, topic) for topic in ask.topics}
    every = [(t, p) for t, count in counts.items() for p in range(count or 0)]
    now = time.time()
    needs_sync = None in counts.values() or (_membership(db, ask, every, now).changes)
    held = {
        (str(t), int(p))
        for t, p in db.execute(
            "SELECT topic, partition FROM leases WHERE grp = ? AND member = ? AND expires_at > ?",
            (ask.group, ask.member, now),
        )
    } & set(every)
    positions = {tp: pos for tp, pos in ask.owned.items() if tp in held}
    for topic, partition in held - positions.keys():
        row = db.execute(
            "SELECT next_offset FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?",
            (ask.group, topic, partition),
        ).fetchone()
        positions[(topic, partition)] = int(row[0]) if row else 0
    heads = _heads(db, positions) if ask.want_heads else None
    records = [] if needs_sync else _read(db, positions, ask.max_records, ask.cursor)
    return Poll(False, version, positions, records, needs_sync, heads)


def _heads(db: sqlite3.Connection, held: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    heads = {}
    for topic, partition in held:
        row = db.execute(
            "SELECT next_offset FROM heads WHERE topic = ? AND partition = ?", (topic, partition)
        ).fetchone()
        heads[(topic, partition)] = int(row[0]) if row else 0
    return heads


def _read(
    db: sqlite3.Connection, positions: dict[TopicPartition, int], max_records: int, cursor: int
) -> list[BusRecord]:
    owned = sorted(positions)
    if not owned:
        return []
    # Start at a different partition each time so a busy one cannot starve the others.
    start = cursor % len(owned)
    batch: list[BusRecord] = []
    for topic, partition in owned[start:] + owned[:start]:
        room = max_records - len(batch)
        if room <= 0:
            break
        rows = db.execute(
            "SELECT offset, key, value, headers FROM records"
            " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
            (topic, partition, positions[(topic, partition)], room),
        ).fetchall()
        for offset, key, value, headers in rows:
            batch.append(
                BusRecord(topic, partition, int(offset), key, bytes(value), _headers(headers))
            )
        if rows:
            positions[(topic, partition)] = int(rows[-1][0]) + 1
    return batch


def sync(db: sqlite3.Connection, ask: PollRequest, partitions: int) -> None:
    """Create missing topics, join the group, give up and take partitions: what `look`
    found missing, decided again under the write lock."""
    every = [(t, p) for t in ask.topics for p in range(ensure_topic(db, t, partitions))]
    now = time.time()
    dead = [(ask.group, m) for m in _dead_members(db, ask)]
    db.executemany("DELETE FROM leases WHERE grp = ? AND member = ?", dead)
    db.executemany("DELETE FROM members WHERE grp = ? AND member = ?", dead)
    plan = _membership(db, ask, every, now)
    if not plan.changes:
        return
    group, member = ask.group, ask.member
    expires = now + ask.lease_ttl_s
    db.execute(
        "INSERT INTO members (grp, member, expires_at, host, pid, pid_started)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (grp, member) DO UPDATE SET expires_at = excluded.expires_at",
        (group, member, expires, ask.host, ask.process.pid, ask.process.create_time),
    )
    db.execute("DELETE FROM members WHERE grp = ? AND expires_at <= ?", (group, now))
    db.executemany(
        "DELETE FROM leases WHERE grp = ? AND topic = ? AND partition = ? AND member = ?",
        [(group, t, p, member) for t, p in plan.release],
    )
    db.executemany(
        "INSERT INTO leases (grp, topic, partition, member, expires_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, topic, partition) DO UPDATE"
        " SET member = excluded.member, expires_at = excluded.expires_at"
        " WHERE leases.expires_at <= ? OR leases.member = excluded.member",
        [(group, t, p, member, expires, now) for t, p in plan.acquire],
    )


def renew(db: sqlite3.Connection, group: str, member: str, lease_ttl_s: float) -> None:
    expires = time.time() + lease_ttl_s
    db.execute(
        "UPDATE members SET expires_at = ? WHERE grp = ? AND member = ?",
        (expires, group, member),
    )
    db.execute(
        "UPDATE leases SET expires_at = ? WHERE grp = ? AND member = ?",
        (expires, group, member),
    )


def commit(
    db: sqlite3.Connection, group: str, member: str, positions: dict[TopicPartition, int]
) -> list[TopicPartition]:
    """Store positions of partitions this member still holds; returns the others."""
    refused: list[TopicPartition] = []
    for (topic, partition), offset in positions.items():
        row = db.execute(
            "SELECT member FROM leases WHERE grp = ? AND topic = ? AND partition = ?",
            (group, topic, partition),
        ).fetchone()
        if row is None or row[0] != member:
            refused.append((topic, partition))
            continue
        db.execute(
            "INSERT INTO group_offsets (grp, topic, partition, next_offset)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
            " DO UPDATE SET next_offset = excluded.next_offset",
            (group, topic, partition, offset),
        )
    return refused


def leave(db: sqlite3.Connection, group: str, member: str) -> None:
    db.execute("DELETE FROM leases WHERE grp = ? AND member = ?", (group, member))
    db.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))
