"""The embedded durable log: one SQLite file, shared by every process on the machine.

Durability: WAL journal with `synchronous=FULL`, so a publish returns only after its
transaction is fsynced; an acknowledged publish survives kill -9 and power loss. (WAL with
`synchronous=NORMAL` would also survive kill -9, because committed pages sit in the OS
cache, but could lose the last commits on power loss; it is offered as an option for
machines where that trade is acceptable.)

Layout:
- `topics(topic, partitions)`: the partition count is fixed when a topic is first used, so
  every process maps a key to the same partition (CRC-32 of the key, see `partition_for`);
- `records(topic, partition, offset, key, value, headers, ts)` and `heads` (next offset);
- `group_offsets(grp, topic, partition, next_offset)`: committed positions;
- `members` and `leases`: consumer-group membership across processes. Each member renews
  its row and leases every TTL/3 from a background task. Live members split the
  partitions round robin; a member takes a partition only when its lease is free or
  expired, and gives one up only at fetch time, when its previous batch is settled. A
  member that died stops renewing, so after the TTL its partitions go to the others, who
  start from the committed position: its uncommitted records are delivered again.

Every sqlite3 call runs on one dedicated thread per bus; the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import orjson
import structlog

from stoker.adapters.bus.memory import desired_partitions, partition_for
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, TopicPartition
from stoker.settings import Settings, load_settings

R = TypeVar("R")

log = structlog.get_logger("stoker.adapters.bus.sqlite_log")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0)
);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, member)
);
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
"""


@dataclass(frozen=True, slots=True)
class _PollRequest:
    """One member's state, sent to the bus thread for a fetch round trip."""

    group: str
    member: str
    topics: list[str]
    owned: dict[TopicPartition, int]
    last_version: int
    force: bool
    max_records: int
    cursor: int


@dataclass(frozen=True, slots=True)
class _Poll:
    """What one fetch round trip to the database brought back."""

    skipped: bool
    version: int
    owned: dict[TopicPartition, int]
    records: list[BusRecord]


class SqliteLogBus:
    """The embedded `EventBus`: a durable, multi-process log in one SQLite file.

    path: the database file (default: `<Settings.data_dir>/bus.sqlite3`).
    partitions: partitions of a topic created by this process (default 8).
    lease_ttl_s: how long a silent member keeps its partitions (default 10 s).
    poll_interval_s: how often an idle fetch looks for other processes' writes (0.05 s);
        a publish in this process wakes it at once.
    synchronous: "FULL" (default) or "NORMAL"; see the module docstring.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        partitions: int = 8,
        lease_ttl_s: float = 10.0,
        poll_interval_s: float = 0.05,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 30.0,
        settings: Settings | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if lease_ttl_s <= 0:
            raise ValueError(f"lease_ttl_s must be > 0, got {lease_ttl_s}")
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if path is None:
            path = (settings or load_settings()).data_dir / "bus.sqlite3"
        self.path = Path(path)
        self.partitions = partitions
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._start_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._local_writes = 0
        self._sources: set[_SqliteSource] = set()

    async def start(self) -> None:
        """Open (and if needed create) the database file. Idempotent."""
        async with self._start_lock:
            if self._executor is not None:
                return
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="stoker-sqlite-log")
            try:
                await self._call(self._db_open)
            except BaseException:
                self._executor.shutdown(wait=False)
                self._executor = None
                raise
            log.info("sqlite log opened", path=str(self.path), synchronous=self._synchronous)

    async def close(self) -> None:
        """Close every member opened here (their partitions go back at once), then the file."""
        for source in list(self._sources):
            await source.close()
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self._db_close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            await self._call(self._db_partitions, topic)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        if events:
            await self._append(topic, [(e.subject, e.to_json()) for e in events])

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._append(topic, [(key, value)])

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> _SqliteSource:
        # A fetch takes what the log holds at once: `background` changes nothing.
        member = _SqliteSource(self, group, list(topics))
        self._sources.add(member)
        return member

    async def _append(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        await self._call(self._db_append, topic, items)
        self._local_change()

    def _local_change(self) -> None:
        # Other connections see our commits through `PRAGMA data_version`, but this
        # connection does not, so members sharing it are told directly.
        self._local_writes += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _call(self, fn: Callable[..., R], *args: object) -> R:
        if self._executor is None:
            await self.start()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.OperationalError as exc:
            # Locked beyond the busy timeout, disk full or I/O error: worth retrying.
            raise InfrastructureUnavailable(f"sqlite log {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StokerError(f"sqlite log {self.path}: {exc}") from exc

    # Everything below runs on the bus thread.

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StokerError(f"sqlite log {self.path} is not open")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        # IMMEDIATE takes the write lock up front, so two processes never deadlock on an
        # upgrade from a read lock; they queue on busy_timeout instead.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _db_open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StokerError(f"sqlite log {self.path}: WAL mode refused (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # One write transaction, so processes opening a new file at once do not race.
            conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _db_close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db_partitions(self, topic: str) -> int:
        conn = self._db()
        row = conn.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        if row is None:
            with self._write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO topics (topic, partitions) VALUES (?, ?)",
                    (topic, self.partitions),
                )
            row = conn.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        return int(row[0])

    def _db_append(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        partitions = self._db_partitions(topic)
        by_partition: dict[int, list[tuple[str, bytes]]] = {}
        for key, value in items:
            by_partition.setdefault(partition_for(key, partitions), []).append((key, value))
        now = time.time()
        with self._write() as conn:
            for partition, chunk in by_partition.items():
                row = conn.execute(
                    "SELECT next_offset FROM heads WHERE topic = ? AND partition = ?",
                    (topic, partition),
                ).fetchone()
                head = int(row[0]) if row else 0
                conn.executemany(
                    "INSERT INTO records (topic, partition, offset, key, value, headers, ts)"
                    " VALUES (?, ?, ?, ?, ?, '{}', ?)",
                    [
                        (topic, partition, head + i, key, value, now)
                        for i, (key, value) in enumerate(chunk)
                    ],
                )
                conn.execute(
                    "INSERT INTO heads (topic, partition, next_offset) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, partition)"
                    " DO UPDATE SET next_offset = excluded.next_offset",
                    (topic, partition, head + len(chunk)),
                )

    def _db_poll(self, ask: _PollRequest) -> _Poll:
        conn = self._db()
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if not ask.force and version == ask.last_version:
            return _Poll(True, version, ask.owned, [])
        group = ask.group
        every = [(t, p) for t in ask.topics for p in range(self._db_partitions(t))]
        mine = self._db_sync(group, ask.member, every)
        positions = {tp: pos for tp, pos in ask.owned.items() if tp in mine}
        for topic, partition in mine - positions.keys():
            row = conn.execute(
                "SELECT next_offset FROM group_offsets"
                " WHERE grp = ? AND topic = ? AND partition = ?",
                (group, topic, partition),
            ).fetchone()
            positions[(topic, partition)] = int(row[0]) if row else 0
        records = self._db_read(positions, ask.max_records, ask.cursor)
        return _Poll(False, version, positions, records)

    def _db_sync(self, group: str, member: str, every: list[TopicPartition]) -> set[TopicPartition]:
        """Join the group if needed, give up and take partitions; returns the ones held."""
        conn = self._db()
        now = time.time()
        expires = now + self.lease_ttl_s
        live = [
            str(m)
            for (m,) in conn.execute(
                "SELECT member FROM members WHERE grp = ? AND expires_at > ?", (group, now)
            )
        ]
        leases = {
            (str(t), int(p)): (str(m), float(e))
            for t, p, m, e in conn.execute(
                "SELECT topic, partition, member, expires_at FROM leases WHERE grp = ?",
                (group,),
            )
        }
        wanted = desired_partitions(live, member, every)
        release = [tp for tp, (m, _) in leases.items() if m == member and tp not in wanted]
        acquire = [
            tp
            for tp in wanted
            if tp not in leases
            or leases[tp][1] <= now
            or (leases[tp][0] == member and leases[tp][1] <= now + self.lease_ttl_s / 3)
        ]
        if member not in live or release or acquire:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO members (grp, member, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (grp, member) DO UPDATE SET expires_at = excluded.expires_at",
                    (group, member, expires),
                )
                conn.execute("DELETE FROM members WHERE grp = ? AND expires_at <= ?", (group, now))
                conn.executemany(
                    "DELETE FROM leases WHERE grp = ? AND topic = ? AND partition = ?"
                    " AND member = ?",
                    [(group, t, p, member) for t, p in release],
                )
                conn.executemany(
                    "INSERT INTO leases (grp, topic, partition, member, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, topic, partition) DO UPDATE"
                    " SET member = excluded.member, expires_at = excluded.expires_at"
                    " WHERE leases.expires_at <= ? OR leases.member = excluded.member",
                    [(group, t, p, member, expires, now) for t, p in acquire],
                )
        held = {
            (str(t), int(p))
            for t, p in conn.execute(
                "SELECT topic, partition FROM leases"
                " WHERE grp = ? AND member = ? AND expires_at > ?",
                (group, member, now),
            )
        }
        return held & set(every)

    def _db_read(
        self, positions: dict[TopicPartition, int], max_records: int, cursor: int
    ) -> list[BusRecord]:
        conn = self._db()
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
            rows = conn.execute(
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

    def _db_renew(self, group: str, member: str) -> None:
        expires = time.time() + self.lease_ttl_s
        with self._write() as conn:
            conn.execute(
                "UPDATE members SET expires_at = ? WHERE grp = ? AND member = ?",
                (expires, group, member),
            )
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE grp = ? AND member = ?",
                (expires, group, member),
            )

    def _db_commit(
        self, group: str, member: str, positions: list[tuple[str, int, int]]
    ) -> list[TopicPartition]:
        """Store positions of partitions this member still holds; returns the others."""
        refused: list[TopicPartition] = []
        with self._write() as conn:
            for topic, partition, offset in positions:
                row = conn.execute(
                    "SELECT member FROM leases WHERE grp = ? AND topic = ? AND partition = ?",
                    (group, topic, partition),
                ).fetchone()
                if row is None or row[0] != member:
                    refused.append((topic, partition))
                    continue
                conn.execute(
                    "INSERT INTO group_offsets (grp, topic, partition, next_offset)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
                    " DO UPDATE SET next_offset = excluded.next_offset",
                    (group, topic, partition, offset),
                )
        return refused

    def _db_leave(self, group: str, member: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE grp = ? AND member = ?", (group, member))
            conn.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))


def _headers(raw: str) -> dict[str, str]:
    if raw == "{}":
        return {}
    decoded = orjson.loads(raw)
    return {str(k): str(v) for k, v in decoded.items()}


class _SqliteSource:
    """One member of a consumer group on the SQLite log."""

    def __init__(self, bus: SqliteLogBus, group: str, topics: list[str]) -> None:
        self.member_id = uuid.uuid4().hex
        self._bus = bus
        self._group = group
        self._topics = topics
        self._positions: dict[TopicPartition, int] = {}
        self._version = -1
        self._seen_local = -1
        self._next_sync = 0.0
        self._more = True
        self._cursor = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self._joined = False
        self._closed = False
        self._log = log.bind(group=group, member=self.member_id)

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = self._bus._changed
            now = loop.time()
            # Data and membership changes by other processes show in data_version; lease
            # expiry does not, so membership is also re-checked on a timer.
            force = self._more or self._bus._local_writes != self._seen_local
            force = force or now >= self._next_sync
            self._seen_local = self._bus._local_writes
            self._cursor += 1
            ask = _PollRequest(
                self._group,
                self.member_id,
                self._topics,
                dict(self._positions),
                self._version,
                force,
                max_records,
                self._cursor,
            )
            poll = await self._bus._call(self._bus._db_poll, ask)
            self._version = poll.version
            if not poll.skipped:
                self._adopt(poll.owned)
                self._more = len(poll.records) >= max_records
                if now >= self._next_sync:
                    self._next_sync = now + min(1.0, self._bus.lease_ttl_s / 3)
            if poll.records:
                return poll.records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(self._bus.poll_interval_s, remaining))

    def _adopt(self, owned: dict[TopicPartition, int]) -> None:
        gained = owned.keys() - self._positions.keys()
        lost = self._positions.keys() - owned.keys()
        if gained or lost:
            self._log.info(
                "partitions reassigned",
                gained=sorted(f"{t}/{p}" for t, p in gained),
                lost=sorted(f"{t}/{p}" for t, p in lost),
            )
        self._positions = owned
        if not self._joined:
            self._joined = True
            self._heartbeat = asyncio.create_task(self._renew_forever())
            self._heartbeat.add_done_callback(self._heartbeat_done)
        if lost:
            self._bus._local_change()

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        if not positions:
            return
        refused = await self._bus._call(
            self._bus._db_commit,
            self._group,
            self.member_id,
            [(t, p, o) for (t, p), o in positions.items()],
        )
        if refused:
            # The lease ran out and another member took over: it starts from the last
            # committed position, so these records are delivered again (at-least-once).
            self._log.warning(
                "commit refused: partitions now belong to another member",
                partitions=sorted(f"{t}/{p}" for t, p in refused),
            )
            for tp in refused:
                self._positions.pop(tp, None)
        self._bus._local_change()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._sources.discard(self)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._joined and self._bus._executor is not None:
            await self._bus._call(self._bus._db_leave, self._group, self.member_id)
            self._bus._local_change()
        self._positions.clear()

    async def _renew_forever(self) -> None:
        interval = self._bus.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._bus._call(self._bus._db_renew, self._group, self.member_id)
            except InfrastructureUnavailable as exc:
                # One missed renewal is harmless; the lease outlives three intervals.
                self._log.warning("lease renewal failed; retrying", error=str(exc))

    def _heartbeat_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error("lease renewal stopped", error=repr(task.exception()))
