"""The embedded JobStore: one SQLite file in WAL mode.

Write groups run on the event loop itself, each in one short transaction (ADR 0017, below);
a write lane's thread waits for the file when another writer holds it. Reads other than
point reads run on a read lane's thread, with a read-only connection of its own.

Writes take the file's write lock up front (`BEGIN IMMEDIATE`), which makes
read-check-write one atomic step even when several processes share the file. Before it, a
write waits for its turn among the file's writers on a lock file beside it
(`writer_turns`), so a process that shares the file gets the lock as soon as it is free
rather than after SQLite's sleep-and-retry. A job, its history line and its outbox events
commit in one transaction, so a crash keeps all of them or none.

Readers are not blocked by a writer in WAL mode, so reads do not queue behind write groups
(when both shared one lane, a New job's read waited for the writes ahead of it: p99 about
40 ms at 300 jobs/s). A read sees every write that committed before it started, so a
caller that awaited its write reads it back.

The commits themselves never checkpoint the write-ahead log (which stalled every writer of
the file for up to hundreds of milliseconds): a thread of the store does, after writes and
outside the writer turn (ADR 0015, `wal_checkpoints`).

Point reads (`get`, `get_many`, `history`: rows found by primary key) run in place, on the event
loop, on a connection of their own (ADR 0015). They take tens of microseconds, and a hop to
a worker thread cost far more: every SQLite step releases the GIL, and taking it back
waits up to the interpreter's switch interval (5 ms) while the loop is busy. A point read
that finds the file busy (which WAL readers only do in rare cases, such as another
connection holding the file in exclusive locking mode) does not wait on the loop: it goes
to the read lane, which waits with the busy timeout.

Writes in place (ADR 0017): a write group runs on the event loop, on a connection of its
own, when the writer turn is free, and otherwise right after the write lane's thread has
waited for the turn. On the thread, every SQLite step handed the GIL back and waited up to
the switch interval to take it again while the loop was busy, and a group of a few dozen
writes held the file's turn for tens of milliseconds, against the other process too. A
commit appends to the log in the page cache without syncing (`synchronous = NORMAL`), so
the loop waits on no disk; checkpoints, which sync, stay on their thread.

Group commit: writes that arrive while the writer is busy are queued and then run together,
in arrival order, in one transaction, and every caller hears back only after that
transaction committed (reads are grouped the same way, without a transaction). One commit
and one thread hop then serve a whole burst: a transaction per call capped a busy pipeline
at about a thousand writes a second.

A write in a group has no savepoint of its own (one per write cost about a quarter of the
worker's time). Instead every write decides and prepares everything before its first
statement, and its statements either all succeed or raise an SQLite error, which aborts
the whole group. So a write refused for its own reasons (a version conflict, an illegal
transition) has written nothing, and the group's other writes stand.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog

from stoker.adapters.store.wal_checkpoints import WalCheckpoint, checkpoint
from stoker.adapters.store.writer_turns import WriterTurns
from stoker.core.errors import (
    InfrastructureUnavailable,
    JobNotFound,
    StokerError,
    VersionConflict,
)
from stoker.core.events import CloudEvent, decode_event
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.store_rules import (
    StoreFailure,
    check_limit,
    check_outbox,
    creation_line,
    decode_cursor,
    encode_cursor,
    event_bytes,
    job_position,
    plan_from_copy,
    plan_transition,
    time_key,
    trend_days,
)
from stoker.ports.store import OutboxEntry, Page, Trends

T = TypeVar("T")

log = structlog.get_logger("stoker.adapters.store.sqlite")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    status      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_key TEXT NOT NULL,
    due_key     TEXT,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_key, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_key, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_key, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_owner_status ON jobs (owner, status, created_key, job_id);
-- Partial: only jobs waiting for a retry carry a due time.
CREATE INDEX IF NOT EXISTS jobs_by_due ON jobs (due_key, job_id) WHERE due_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS history (
    job_id    TEXT NOT NULL,
    version   INTEGER NOT NULL,
    to_status TEXT NOT NULL,
    at_key    TEXT NOT NULL,
    reason    TEXT,
    line      TEXT NOT NULL,
    PRIMARY KEY (job_id, version)
);
CREATE INDEX IF NOT EXISTS history_by_time ON history (at_key, to_status);

CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT NOT NULL,
    event    BLOB NOT NULL,
    event_id TEXT
);
"""

# Files written before outbox entries were named by their event id get the column and an
# index; old rows take the id from the stored event.
OUTBOX_EVENT_ID = """
ALTER TABLE outbox ADD COLUMN event_id TEXT;
UPDATE outbox SET event_id = json_extract(CAST(event AS TEXT), '$.id') WHERE event_id IS NULL;
"""
OUTBOX_INDEX = "CREATE INDEX IF NOT EXISTS outbox_by_event ON outbox (event_id)"

LOCK_RETRIES = 3
CHECKPOINT_INTERVAL_S = 0.5
"""After a write, the log is checkpointed within this long: one checkpoint for the burst."""
MAX_GROUP = 256
"""Calls run in one transaction at most."""


@dataclass
class _Call:
    what: str
    fn: Callable[[sqlite3.Connection | None], Any]
    future: asyncio.Future[Any]


@dataclass
class _Lane:
    """One worker thread, its connection, and the calls waiting for its next group.
    `writes`: a group of several calls runs in one write transaction (else each on its own)."""

    name: str
    writes: bool
    executor: ThreadPoolExecutor = field(init=False)
    conn: sqlite3.Connection | None = None
    queue: list[_Call] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"stoker-sqlite-{self.name}"
        )

    def close_conn(self) -> None:
        """On the lane's thread."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SqliteJobStore:
    """Jobs, history and outbox in one SQLite file; safe for several processes."""

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
        if checkpoint_interval_s < 0:
            raise ValueError(f"checkpoint_interval_s must be >= 0, got {checkpoint_interval_s}")
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._checkpoint_interval_s = checkpoint_interval_s
        self._writer: _Lane | None = None
        self._reader: _Lane | None = None
        self._checkpointer: _Lane | None = None
        self._checkpoint_due: asyncio.Task[None] | None = None
        self._closing = False
        self._in_place: sqlite3.Connection | None = None
        self._writes_in_place: sqlite3.Connection | None = None
        self._writers = WriterTurns(self._path)
        # The loop's own handle for write groups run in place (ADR 0017).
        self._in_place_turns = WriterTurns(self._path)
        # The checkpointer's own handle: one shared with the writer would not keep it out.
        self._checkpoint_turns = WriterTurns(self._path)

    async def start(self) -> None:
        if self._writer is not None:
            return
        self._writer = _Lane("write", writes=True)
        self._reader = _Lane("read", writes=False)
        self._checkpointer = _Lane("checkpoint", writes=False)
        self._closing = False
        await self._run("open", self._open)
        await self._run_read("open", self._open_reader)
        await self._queue_on(self._checkpointer, "open", self._open_checkpointer)
        # Never waits on the loop: a busy file sends the read to the lane (ADR 0015).
        self._in_place = self._read_only(self._connect(busy_timeout_ms=0))
        self._in_place_turns.open()
        self._writes_in_place = self._writing(self._connect(busy_timeout_ms=0))

    async def close(self) -> None:
        if self._writer is None:
            return
        lanes = [
            lane for lane in (self._reader, self._writer, self._checkpointer) if lane is not None
        ]
        if self._in_place is not None:
            self._in_place.close()
            self._in_place = None
        # Later groups go to the writer's thread; one running here finishes first.
        writes_in_place, self._writes_in_place = self._writes_in_place, None
        self._closing = True
        if self._checkpoint_due is not None:
            # A waiting checkpoint is dropped; SQLite checkpoints when the last connection
            # to the file closes.
            self._checkpoint_due.cancel()
            await asyncio.gather(self._checkpoint_due, return_exceptions=True)
        try:
            await self._queue_on(self._checkpointer, "close", self._close_checkpointer)
            await self._run_read("close", lambda _: self._lane(self._reader).close_conn())
            await self._run("close", self._close_writer)
        finally:
            for lane in lanes:
                if lane.draining is not None:
                    await asyncio.gather(lane.draining, return_exceptions=True)
                lane.executor.shutdown(wait=True)
            if writes_in_place is not None:
                writes_in_place.close()
            self._in_place_turns.close()
            self._writer = self._reader = self._checkpointer = None

    def _open(self, _: sqlite3.Connection | None) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        self._writing(conn)
        self._writers.open()
        with self._writers.turn():
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "event_id" not in columns:
                conn.executescript(f"BEGIN IMMEDIATE; {OUTBOX_EVENT_ID} COMMIT;")
            conn.execute(OUTBOX_INDEX)
        self._lane(self._writer).conn = conn

    def _open_reader(self, _: sqlite3.Connection | None) -> None:
        self._lane(self._reader).conn = self._read_only(self._connect())

    def _open_checkpointer(self, _: sqlite3.Connection | None) -> None:
        self._checkpoint_turns.open()
        self._lane(self._checkpointer).conn = self._connect()

    def _close_checkpointer(self, _: sqlite3.Connection | None) -> None:
        self._lane(self._checkpointer).close_conn()
        self._checkpoint_turns.close()

    @staticmethod
    def _writing(conn: sqlite3.Connection) -> sqlite3.Connection:
        """Settings of a connection that writes (each connection has its own)."""
        # NORMAL in WAL mode survives a process crash; only power loss can drop the last commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job (ADR 0015)
        return conn

    @staticmethod
    def _read_only(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("PRAGMA query_only = ON")  # a write here would be a bug: refuse it
        return conn

    def _connect(self, *, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        timeout_ms = self._busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        return conn

    def _close_writer(self, _: sqlite3.Connection | None) -> None:
        self._lane(self._writer).close_conn()
        self._writers.close()

    @staticmethod
    def _lane(lane: _Lane | None) -> _Lane:
        if lane is None:
            raise StoreFailure("the SQLite store is not started; call start() first")
        return lane

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        """Queue `fn` for the writer; it runs in the next group (see the module docstring)."""
        return await self._queue_on(self._writer, what, fn)

    async def _run_read(self, what: str, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        """Queue `fn`, which only reads, for the reader."""
        return await self._queue_on(self._reader, what, fn)

    async def checkpoint(self) -> WalCheckpoint:
        """Copy the write-ahead log into the database file now (the store does it by itself
        after writes; see `wal_checkpoints`)."""

        def op(conn: sqlite3.Connection | None) -> WalCheckpoint:
            return checkpoint(self._read(conn), self._checkpoint_turns)

        return await self._queue_on(self._checkpointer, "checkpoint", op)

    def _wrote(self) -> None:
        """After a write group: make sure a checkpoint follows within the interval."""
        if self._closing:
            return
        if self._checkpoint_due is None or self._checkpoint_due.done():
            self._checkpoint_due = asyncio.get_running_loop().create_task(
                self._checkpoint_soon(), name="stoker-sqlite-checkpoint"
            )

    async def _checkpoint_soon(self) -> None:
        # Waiting gathers the writes of a burst into one checkpoint, not one per group.
        await asyncio.sleep(self._checkpoint_interval_s)
        try:
            await self.checkpoint()
        except StokerError as exc:  # the log keeps growing until a later one succeeds
            log.warning("sqlite checkpoint failed", path=str(self._path), error=str(exc))

    async def _read_in_place(self, what: str, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        """Run `fn`, a point read, here on the loop; on the read lane if the file is busy."""
        if self._in_place is None:
            raise StoreFailure("the SQLite store is not started; call start() first")
        try:
            return fn(self._in_place)
        except sqlite3.OperationalError:
            # Busy, or an outage: the lane waits out the one and reports the other.
            return await self._run_read(what, fn)
        except sqlite3.Error as exc:
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: sqlite3.Error) -> StoreFailure:
        return StoreFailure(f"sqlite {what} on {self._path}: {exc}")

    async def _queue_on(
        self, lane: _Lane | None, what: str, fn: Callable[[sqlite3.Connection | None], T]
    ) -> T:
        lane = self._lane(lane)
        loop = asyncio.get_running_loop()
        call = _Call(what, fn, loop.create_future())
        lane.queue.append(call)
        if lane.draining is None or lane.draining.done():
            lane.draining = loop.create_task(self._drain(lane), name=f"stoker-sqlite-{lane.name}")
        result: T = await call.future
        return result

    async def _drain(self, lane: _Lane) -> None:
        """Run the lane's queued calls group by group until its queue is empty."""
        while lane.queue:
            group, lane.queue = lane.queue[:MAX_GROUP], lane.queue[MAX_GROUP:]
            what = _group_name(group)
            try:
                outcomes = await self._group_in_place(group, what) if lane.writes else None
                if outcomes is None:
                    outcomes = await self._run_group(lane, group, what)
            except BaseException as exc:  # the whole group failed (or we are cancelled)
                for call in group:
                    if not call.future.done():
                        call.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            if lane.writes:
                self._wrote()
            for call, (ok, value) in zip(group, outcomes, strict=True):
                if call.future.done():
                    continue  # its caller gave up waiting; the work itself is done
                if ok:
                    call.future.set_result(value)
                else:
                    call.future.set_exception(value)

    async def _group_in_place(self, group: list[_Call], what: str) -> list[tuple[bool, Any]] | None:
        """Run a write group here, on the event loop (ADR 0017); None leaves it to the
        writer's thread. Only the wait for the file's writer turn, when another writer holds
        it, happens on that thread: the statements then run here, where they need no hand-
        back of the GIL after every step. SQLite's own lock is tried once (busy timeout 0),
        so only a writer that does not take turns sends the group to the thread, which
        waits for it. An SQLite error that may pass (busy, I/O) rolls back and leaves the
        group to the thread too, which retries or reports it."""
        if self._writes_in_place is None:
            return None
        await self._take_turn_in_place(what)
        try:
            conn = self._writes_in_place
            if conn is None:  # closing meanwhile
                return None
            with _committed(conn):
                return [_outcome(call, conn) for call in group]
        except sqlite3.OperationalError:
            return None
        except sqlite3.Error as exc:
            raise self._failure(what, exc) from exc
        finally:
            self._in_place_turns.give_back()

    async def _take_turn_in_place(self, what: str) -> None:
        """Hold the loop's writer turn: at once when it is free, else once the writer's
        thread has waited for it (reported each busy timeout, as a thread's group is)."""
        turns = self._in_place_turns
        if turns.take(wait=False):
            return
        taking = self._lane(self._writer).executor.submit(turns.take)
        try:
            await self._reporting_long_waits(asyncio.wrap_future(taking), what)
        except asyncio.CancelledError:
            # A thread already waiting still gets the turn, and nobody would give it back.
            taking.add_done_callback(lambda done: _give_back_if_taken(turns, done))
            raise

    async def _run_group(
        self, lane: _Lane, group: list[_Call], what: str
    ) -> list[tuple[bool, Any]]:
        loop = asyncio.get_running_loop()
        for attempt in range(1, LOCK_RETRIES + 1):
            try:
                work = loop.run_in_executor(lane.executor, self._group_in_worker, lane, group)
                return await self._reporting_long_waits(work, what)
            except sqlite3.OperationalError as exc:
                # Locked after the busy timeout, disk full, file unreadable: an outage.
                failure = InfrastructureUnavailable(f"sqlite {what} on {self._path}: {exc}")
                if attempt == LOCK_RETRIES or "locked" not in str(exc):
                    log.error("sqlite unavailable", operation=what, path=str(self._path))
                    raise failure from exc
                log.warning("sqlite busy; retrying", operation=what, attempt=attempt)
                await asyncio.sleep(0.05 * attempt)
            except sqlite3.Error as exc:
                raise self._failure(what, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reporting_long_waits(self, work: asyncio.Future[T], what: str) -> T:
        """`work`'s result; a warning each busy timeout it is not done. A writer of another
        process frozen inside its transaction keeps the file's write turn, and waiting for
        a turn has no time limit (ADR 0009): this says why the store stopped answering."""
        patience_s = max(self._busy_timeout_ms / 1000, 0.001)
        waited_s = 0.0
        while True:
            try:
                done, _ = await asyncio.wait({work}, timeout=patience_s)
            except asyncio.CancelledError:
                work.cancel()  # as awaiting it would have; a running call still finishes
                raise
            if done:
                return work.result()
            waited_s += patience_s
            log.warning(
                "sqlite call still waiting; a writer in another process may hold the turn",
                operation=what,
                path=str(self._path),
                waited_s=round(waited_s, 3),
            )

    def _group_in_worker(self, lane: _Lane, group: list[_Call]) -> list[tuple[bool, Any]]:
        """On the lane's thread. Writes: one transaction around the group when there is more
        than one call (a single call manages its own, as `_write` does). Reads: each on its
        own. A call's own error is its outcome; an SQLite error aborts the whole group,
        which is then retried or failed as one."""
        conn = lane.conn
        if not lane.writes or len(group) == 1 or conn is None:
            return [_outcome(call, conn) for call in group]
        with self._transaction(conn):
            return [_outcome(call, conn) for call in group]

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        """One atomic write: its own transaction, or part of a group's (see the module
        docstring for what that asks of the write)."""
        if conn is None:
            raise StoreFailure("the SQLite store is closed")
        if conn.in_transaction:
            yield conn
            return
        with self._transaction(conn):
            yield conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A write transaction in this process's turn among the file's writers."""
        with self._writers.turn(), _committed(conn):
            yield

    @staticmethod
    def _read(conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StoreFailure("the SQLite store is closed")
        return conn

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        check_outbox(outbox)
        # Rows are made here, on the event loop: the worker thread is the store's one lane,
        # and every bit of Python it runs waits for the GIL while the loop is busy.
        job_row, history, events = (
            _job_row(job),
            _history_row(creation_line(job)),
            _outbox_rows(outbox),
        )

        def op(conn: sqlite3.Connection | None) -> str | None:
            with self._write(conn) as db:
                row = db.execute(
                    "SELECT record FROM jobs WHERE job_id = ?", (job.job_id,)
                ).fetchone()
                if row is not None:
                    return str(row[0])
                db.execute(
                    "INSERT INTO jobs (job_id, owner, created_key, status, version, due_key,"
                    " record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    job_row,
                )
                _insert_history(db, history)
                _insert_outbox(db, events)
                return None

        existing = await self._run("create", op)
        if existing is not None:
            return JobRecord.model_validate_json(existing), False
        return job, True

    async def get(self, job_id: str) -> JobRecord:
        def op(conn: sqlite3.Connection | None) -> str:
            return _load_text(self._read(conn), job_id)

        return JobRecord.model_validate_json(await self._read_in_place("get", op))

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        # The ids go in as one JSON array: one statement (prepared once) for any number of
        # ids, and no limit on parameters; SQLite still looks each up by primary key.
        ids = json.dumps(list(job_ids))

        def op(conn: sqlite3.Connection | None) -> list[tuple[str, str]]:
            return (
                self._read(conn)
                .execute(
                    "SELECT job_id, record FROM jobs"
                    " WHERE job_id IN (SELECT value FROM json_each(?))",
                    (ids,),
                )
                .fetchall()
            )

        rows = await self._read_in_place("get_many", op)
        return {job_id: JobRecord.model_validate_json(text) for job_id, text in rows}

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        check_outbox(outbox)
        rows = _outbox_rows(outbox)
        # With a caller's copy that may serve (see `plan_from_copy`) the change is planned
        # here, on the loop (see `create`); otherwise the worker plans it on the stored row.
        from_copy = plan_from_copy(current, job_id, change, expected_version)
        planned = _Planned.of(*from_copy) if from_copy else None

        def op(conn: sqlite3.Connection | None) -> _Planned:
            with self._write(conn) as db:
                plan = planned or _Planned.of(
                    *plan_transition(_load(db, job_id), change, expected_version)
                )
                # Only the columns a transition changes: SQLite then leaves the indexes on
                # owner and creation time alone.
                written = db.execute(
                    "UPDATE jobs SET status = ?, version = ?, due_key = ?, record = ?"
                    " WHERE job_id = ? AND version = ?",
                    (*plan.columns, job_id, expected_version),
                ).rowcount
                if written != 1:  # moved by another writer meanwhile, or gone: say which
                    raise VersionConflict(job_id, expected_version, _load(db, job_id).version)
                _insert_history(db, plan.history)
                _insert_outbox(db, rows)
                return plan

        return (await self._run("transition", op)).updated

    async def history(self, job_id: str) -> list[Transition]:
        def op(conn: sqlite3.Connection | None) -> list[Transition]:
            db = self._read(conn)
            rows = db.execute(
                "SELECT line FROM history WHERE job_id = ? ORDER BY version", (job_id,)
            ).fetchall()
            if not rows:
                raise JobNotFound(job_id)
            return [Transition.model_validate_json(row[0]) for row in rows]

        return await self._read_in_place("history", op)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        check_limit(limit)
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if cursor is not None:
            position = decode_cursor(cursor)
            where.append("(created_key, job_id) < (?, ?)")
            params.extend([str(position.get("t")), str(position.get("id"))])
        sql = "SELECT record FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_key DESC, job_id DESC LIMIT ?"
        params.append(limit + 1)

        def op(conn: sqlite3.Connection | None) -> list[JobRecord]:
            rows = self._read(conn).execute(sql, params).fetchall()
            return [JobRecord.model_validate_json(row[0]) for row in rows]

        found = await self._run_read("list_jobs", op)
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            created, job_id = job_position(items[-1])
            next_cursor = encode_cursor({"t": created, "id": job_id})
        return Page(items=items, next_cursor=next_cursor)

    async def due(self, now: datetime, limit: int = 100) -> list[JobRecord]:
        check_limit(limit)

        def op(conn: sqlite3.Connection | None) -> list[JobRecord]:
            rows = (
                self._read(conn)
                .execute(
                    "SELECT record FROM jobs WHERE due_key IS NOT NULL AND due_key <= ?"
                    " ORDER BY due_key, job_id LIMIT ?",
                    (time_key(now), limit),
                )
                .fetchall()
            )
            return [JobRecord.model_validate_json(row[0]) for row in rows]

        return await self._run_read("due", op)

    async def trends(self, since: datetime, until: datetime) -> Trends:
        first, last = trend_days(since, until)
        low, high = first.isoformat(), (last + timedelta(days=1)).isoformat()

        def op(
            conn: sqlite3.Connection | None,
        ) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
            db = self._read(conn)
            per_day = db.execute(
                "SELECT substr(at_key, 1, 10), to_status, count(*) FROM history"
                " WHERE at_key >= ? AND at_key < ? GROUP BY 1, 2",
                (low, high),
            ).fetchall()
            retries = db.execute(
                "SELECT coalesce(reason, 'unspecified'), count(*) FROM history"
                " WHERE at_key >= ? AND at_key < ? AND to_status = ? GROUP BY 1",
                (low, high, JobStatus.RETRY_SCHEDULED.value),
            ).fetchall()
            return per_day, retries

        per_day, retries = await self._run_read("trends", op)
        days: dict[date, dict[JobStatus, int]] = {}
        for day, status, count in sorted(per_day):
            days.setdefault(date.fromisoformat(day), {})[JobStatus(status)] = int(count)
        return Trends(
            jobs_per_status_per_day=days,
            retries_per_reason={reason: int(count) for reason, count in retries},
        )

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)

        def op(conn: sqlite3.Connection | None) -> list[tuple[str, bytes]]:
            return (
                self._read(conn)
                .execute("SELECT topic, event FROM outbox ORDER BY seq LIMIT ?", (limit,))
                .fetchall()
            )

        rows = await self._run_read("pending_outbox", op)
        entries = []
        for topic, raw in rows:
            event = decode_event(bytes(raw))
            entries.append(OutboxEntry(entry_id=event.id, topic=topic, event=event))
        return entries

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        ids = [(entry_id,) for entry_id in dict.fromkeys(entry_ids)]
        if not ids:
            return

        def op(conn: sqlite3.Connection | None) -> None:
            with self._write(conn) as db:
                db.executemany("DELETE FROM outbox WHERE event_id = ?", ids)

        await self._run("mark_published", op)


def _job_row(job: JobRecord) -> tuple[str, str, str, str, int, str | None, str]:
    """job_id, owner, created_key, then the columns a transition changes."""
    return (job.job_id, job.owner, time_key(job.created_at), *_changed_columns(job))


def _changed_columns(job: JobRecord) -> tuple[str, int, str | None, str]:
    """status, version, due_key, record: what a transition writes."""
    due = (
        time_key(job.due_at)
        if job.status is JobStatus.RETRY_SCHEDULED and job.due_at is not None
        else None
    )
    return job.status.value, job.version, due, job.model_dump_json()


@dataclass(frozen=True, slots=True)
class _Planned:
    """A transition ready to write: the new record, its changed columns and history row."""

    updated: JobRecord
    columns: tuple[str, int, str | None, str]
    """status, version, due_key, record."""
    history: HistoryRow

    @classmethod
    def of(cls, updated: JobRecord, line: Transition) -> _Planned:
        return cls(updated, _changed_columns(updated), _history_row(line))


def _load_text(db: sqlite3.Connection, job_id: str) -> str:
    row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return str(row[0])


def _load(db: sqlite3.Connection, job_id: str) -> JobRecord:
    return JobRecord.model_validate_json(_load_text(db, job_id))


HistoryRow = tuple[str, int, str, str, str | None, str]
OutboxRow = tuple[str, bytes, str]


def _history_row(line: Transition) -> HistoryRow:
    return (
        line.job_id,
        line.version,
        line.to_status.value,
        time_key(line.at),
        line.reason,
        line.model_dump_json(),
    )


def _outbox_rows(outbox: Sequence[tuple[str, CloudEvent]]) -> list[OutboxRow]:
    return [(topic, event_bytes(event), event.id) for topic, event in outbox]


def _insert_history(db: sqlite3.Connection, row: HistoryRow) -> None:
    db.execute(
        "INSERT INTO history (job_id, version, to_status, at_key, reason, line)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        row,
    )


def _insert_outbox(db: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    db.executemany("INSERT INTO outbox (topic, event, event_id) VALUES (?, ?, ?)", rows)


@contextmanager
def _committed(conn: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error, a failed commit included, so
    the connection is never left inside a transaction. The caller holds the writer turn."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _group_name(group: list[_Call]) -> str:
    """What a group does, for logs and errors: its calls' kinds."""
    return ",".join(sorted({c.what for c in group}))


def _give_back_if_taken(turns: WriterTurns, taking: Future[bool]) -> None:
    if not taking.cancelled() and taking.exception() is None:
        turns.give_back()


def _outcome(call: _Call, conn: sqlite3.Connection | None) -> tuple[bool, Any]:
    try:
        return True, call.fn(conn)
    except sqlite3.Error:
        raise
    except Exception as exc:
        return False, exc
