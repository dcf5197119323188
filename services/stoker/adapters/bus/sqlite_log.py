"""The embedded durable log: one SQLite file, shared by every process on the machine.

Durability: WAL journal with `synchronous=FULL`, so a publish returns only after its
transaction is synced to disk; an acknowledged publish survives kill -9 and power loss.
(WAL with `synchronous=NORMAL` would also survive kill -9, because committed pages sit in
the OS cache, but could lose the last commits on power loss; it is offered as an option for
machines where that trade is acceptable.)

Layout (`sqlite_log_schema`):
- `topics(topic, partitions)`: the partition count is fixed when a topic is first used, so
  every process maps a key to the same partition (CRC-32 of the key, see `partition_for`);
- `records(topic, partition, offset, key, value, headers, ts)` and `heads` (next offset);
- `group_offsets(grp, topic, partition, next_offset)`: committed positions;
- `members` and `leases`: consumer-group membership across processes. Each member renews
  its row and leases every TTL/3 from a background task. Live members split the
  partitions round robin; a member takes a partition only when its lease is free or
  expired, and gives one up only at fetch time, when its previous batch is settled. A
  member that died stops renewing, so after the TTL its partitions go to the others, who
  start from the committed position: its uncommitted records are delivered again. A member
  row also names its process (host, pid, start time): a member on the same host whose
  process has exited (a SIGKILLed `stoker up`, say) is known dead at once, and its
  partitions are taken at its next membership check (within a second or two) instead of
  after the TTL.

The statements are `sqlite_log_statements`. They run as on every SQLite file stoker uses
(`stoker.adapters.sqlite`): publishes, commits and membership changes on the file's writer
thread, publishes queued together in one transaction (one sync for the lot); fetches on its
reader thread, which never waits for a writer. A fetch writes (through the writer) only
when its member must join, renew, give up or take partitions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import structlog

from stoker.adapters.bus import sqlite_log_statements as statements
from stoker.adapters.bus.sqlite_log_schema import migrate
from stoker.adapters.processes import host_id, this_process
from stoker.adapters.sqlite import SqliteDatabase
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, TopicPartition
from stoker.settings import Settings, load_settings

log = structlog.get_logger("stoker.adapters.bus.sqlite_log")


@dataclass
class _Log:
    """What the bus and its members share: the file and this process's wake-ups."""

    db: SqliteDatabase
    partitions: int
    lease_ttl_s: float
    poll_interval_s: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) when this process wrote to the log, to wake its waiting fetches
    at once instead of at their next poll."""
    open: bool = False
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ready(self) -> SqliteDatabase:
        if not self.open:
            async with self.start_lock:
                if not self.open:
                    await self.db.start()
                    self.open = True
                    log.info("sqlite log opened", path=str(self.db.path))
        return self.db

    def wake_fetches(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SqliteLogBus:
    """The embedded `EventBus`: a durable, multi-process log in one SQLite file.

    path: the database file (default: `<Settings.data_dir>/bus.sqlite3`).
    partitions: partitions of a topic created by this process (default 8).
    lease_ttl_s: how long a silent member keeps its partitions (default 10 s).
    poll_interval_s: how often an idle fetch looks for other processes' writes (0.05 s);
        a publish in this process wakes it at once.
    synchronous: "FULL" (default) or "NORMAL"; see the module docstring.
    busy_timeout_s: how long a write waits for the file's write lock held by another
        process before it is tried again (and at last fails as unavailable).
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
        if busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be >= 0, got {busy_timeout_s}")
        if path is None:
            path = (settings or load_settings()).data_dir / "bus.sqlite3"
        self.path = Path(path)
        self.partitions = partitions
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        db = SqliteDatabase(
            self.path,
            label="sqlite log",
            migrate=migrate,
            failure=StokerError,
            synchronous=synchronous,
            busy_timeout_ms=int(busy_timeout_s * 1000),
        )
        self._log = _Log(db, partitions, lease_ttl_s, poll_interval_s)
        self._sources: set[_SqliteSource] = set()

    async def start(self) -> None:
        """Open (and if needed create) the database file. Idempotent."""
        await self._log.ready()

    async def close(self) -> None:
        """Close every member opened here (their partitions go back at once), then the file."""
        for source in list(self._sources):
            await source.close()
        if self._log.open:
            self._log.open = False
            await self._log.db.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        db = await self._log.ready()
        for topic in topics:
            await db.write(
                "ensure_topics",
                partial(statements.ensure_topic, topic=topic, partitions=self.partitions),
            )

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
        member = _SqliteSource(self._log, group, list(topics), self._sources.discard)
        self._sources.add(member)
        return member

    async def _append(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        db = await self._log.ready()
        await db.write(
            "publish", lambda conn: statements.append(conn, topic, items, self.partitions)
        )
        self._log.wake_fetches()


class _SqliteSource:
    """One member of a consumer group on the SQLite log."""

    def __init__(
        self,
        log_: _Log,
        group: str,
        topics: list[str],
        on_close: Callable[[_SqliteSource], None],
    ) -> None:
        self.member_id = uuid.uuid4().hex
        self._host = host_id()
        self._process = this_process()
        self._log = log_
        self._group = group
        self._topics = topics
        self._on_close = on_close
        self._positions: dict[TopicPartition, int] = {}
        self._version = -1
        self._next_sync = 0.0
        self._more = True
        self._cursor = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self._joined = False
        self._closed = False
        self._events = log.bind(group=group, member=self.member_id)
        self._lag: dict[TopicPartition, int] = {}
        self._lag_due = 0.0

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        db = await self._log.ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = self._log.changed
            now = loop.time()
            # Changes by any connection, this process's writer included, show in the
            # reader's data_version; lease expiry does not, so membership is also
            # re-checked on a timer.
            self._cursor += 1
            ask = statements.PollRequest(
                self._group,
                self.member_id,
                self._topics,
                dict(self._positions),
                self._version,
                self._more or now >= self._next_sync,
                max_records,
                self._cursor,
                self._log.lease_ttl_s,
                self._host,
                self._process,
                want_heads=now >= self._lag_due,
            )
            poll = await db.read("fetch", partial(statements.look, ask=ask))
            if poll.needs_sync:
                await db.write(
                    "join",
                    partial(statements.sync, ask=ask, partitions=self._log.partitions),
                )
                poll = await db.read(
                    "fetch", partial(statements.look, ask=replace(ask, force=True))
                )
            self._version = poll.version
            if not poll.skipped:
                self._adopt(poll.owned)
                if poll.heads is not None:
                    self._lag_due = now + 1.0
                    self._lag = {
                        tp: max(0, head - poll.owned.get(tp, head))
                        for tp, head in poll.heads.items()
                    }
                self._more = len(poll.records) >= max_records
                if now >= self._next_sync:
                    self._next_sync = now + min(1.0, self._log.lease_ttl_s / 3)
            if poll.records:
                return poll.records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(changed.wait(), min(self._log.poll_interval_s, remaining))
            except TimeoutError:
                continue

    def lag(self) -> Mapping[TopicPartition, int]:
        """Records after this member's position in each partition it holds, as read at a
        fetch (refreshed about once a second)."""
        return {tp: n for tp, n in self._lag.items() if tp in self._positions}

    def _adopt(self, owned: dict[TopicPartition, int]) -> None:
        gained = owned.keys() - self._positions.keys()
        lost = self._positions.keys() - owned.keys()
        if gained or lost:
            self._events.info(
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
            self._log.wake_fetches()

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        if not positions:
            return
        db = await self._log.ready()
        refused = await db.write(
            "commit",
            lambda conn: statements.commit(conn, self._group, self.member_id, dict(positions)),
        )
        if refused:
            # The lease ran out and another member took over: it starts from the last
            # committed position, so these records are delivered again (at-least-once).
            self._events.warning(
                "commit refused: partitions now belong to another member",
                partitions=sorted(f"{t}/{p}" for t, p in refused),
            )
            for tp in refused:
                self._positions.pop(tp, None)
        self._log.wake_fetches()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._joined and self._log.open:
            await self._log.db.write(
                "leave", lambda conn: statements.leave(conn, self._group, self.member_id)
            )
            self._log.wake_fetches()
        self._positions.clear()

    async def _renew_forever(self) -> None:
        interval = self._log.lease_ttl_s / 3
        group, member, ttl_s = self._group, self.member_id, self._log.lease_ttl_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._log.db.write(
                    "renew", lambda conn: statements.renew(conn, group, member, ttl_s)
                )
            except InfrastructureUnavailable as exc:
                # One missed renewal is harmless; the lease outlives three intervals.
                self._events.warning("lease renewal failed; retrying", error=str(exc))

    def _heartbeat_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._events.error("lease renewal stopped", error=repr(task.exception()))
