"""One SQLite file as every stoker adapter uses it: the job store, the embedded event log
and the notifier's ledger.

The threading model, the same for all three:

- **Writes in groups, on the event loop while the file is free.** Writes made during one
  round of the loop run together in one `BEGIN IMMEDIATE` transaction (group commit) on a
  connection of the loop's own, with no busy wait: with `synchronous = NORMAL` a commit
  appends to the write-ahead log in the page cache, so a group of writes costs the loop
  tens of microseconds each. If another connection holds the write lock (another process
  writing the file), or the lane below still has writes to finish, or the file syncs every
  commit (`synchronous = FULL`, the notifier's ledger), the group goes to:
- **One writer lane** (a thread with a connection of its own, `stoker.adapters.sqlite.lane`),
  which waits for the lock, asking again every 0.2 to 2 ms up to the busy timeout (SQLite's
  own busy handler sleeps up to 100 ms between tries), and runs the groups queued for it
  the same way. Writes keep their order: while the lane has writes to finish, later ones
  wait on the loop until it has, then run as the next group. `BEGIN IMMEDIATE` takes the
  write lock before the first read, so a read-check-write is one atomic step even when
  other processes write the same file.
- **One reader lane** with a read-only connection (`PRAGMA query_only`): in WAL mode a
  reader never waits for a writer, so reads do not queue behind write groups. A read sees
  every write that committed before it started, so a caller that awaited its write reads
  it back.
- **One checkpointer lane**: no connection checkpoints the log inside a commit; this lane
  does, at most `checkpoint_interval_s` after a write (`stoker.adapters.sqlite.checkpoints`).

Why writes run on the loop when they can: on a thread, every SQLite step hands the GIL back
and waits to take it again while the loop is busy, so a write group held the file's lock
for tens of milliseconds and the services' launch path lost its latency floor (measured in
docs/benchmarks-lifecycle.md, "One clear shape"). Nothing on the loop ever waits for a
lock or a disk sync: those waits happen on the lanes.

Past the busy timeout a lane's group is run again a few times (`BUSY_RETRY`) before its
callers get `InfrastructureUnavailable`; so no write is lost and no wait is unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import structlog

from stoker.adapters.sqlite.checkpoints import WalCheckpoint, checkpoint
from stoker.adapters.sqlite.lane import (
    MAX_GROUP,
    Call,
    Lane,
    awaited,
    run_in_transaction,
    settle,
)
from stoker.core.errors import StokerError
from stoker.telemetry.metrics import StoreTimer

T = TypeVar("T")

log = structlog.get_logger("stoker.adapters.sqlite")

Synchronous = Literal["NORMAL", "FULL"]


class SqliteDatabase:
    """One SQLite file in WAL mode, with a writer, a reader and a checkpointer lane.

    path: the database file (its folder is created).
    label: how errors and logs name it ("sqlite store", "notification ledger", ...).
    migrate: creates or upgrades the schema; runs once at start, inside a write
        transaction, so processes opening a new file at once do not race.
    failure: the adapter's error class for SQLite errors no retry will fix.
    synchronous: "NORMAL" survives a killed process (a power loss may drop the last
        commits); "FULL" syncs every commit and survives a power loss too.
    busy_timeout_ms: how long a statement waits for a lock another connection holds.
    checkpoint_interval_s: a write is checkpointed into the database file within this long
        (one checkpoint for a whole burst).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        label: str,
        migrate: Callable[[sqlite3.Connection], None],
        failure: type[StokerError],
        synchronous: Synchronous = "NORMAL",
        busy_timeout_ms: int = 5000,
        checkpoint_interval_s: float = 0.5,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
        if checkpoint_interval_s < 0:
            raise ValueError(f"checkpoint_interval_s must be >= 0, got {checkpoint_interval_s}")
        self.path = Path(path)
        self._migrate = migrate
        self._failure = failure
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._checkpoint_interval_s = checkpoint_interval_s
        named = f"{label} {self.path}"
        self._timer = StoreTimer(label)
        self._writer = Lane(
            "write",
            named,
            self._open_writer,
            transaction="BEGIN IMMEDIATE",
            failure=failure,
            on_commit=self._wrote,
            lock_wait_s=busy_timeout_ms / 1000,
        )
        self._reader = Lane("read", named, self._open_reader, transaction=None, failure=failure)
        self._checkpointer = Lane(
            "checkpoint", named, self._connect, transaction=None, failure=failure
        )
        self._checkpoint_due: asyncio.Task[None] | None = None
        self._here: sqlite3.Connection | None = None
        """The loop's own write connection, while the database is open."""
        self._pending: list[Call] = []
        """Writes made in this round of the loop, run together at its end."""
        self._on_lane = 0
        """Writes handed to the writer lane whose callers have not heard back yet."""
        self._open = False
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Open the file (creating it and its schema if needed). Idempotent."""
        async with self._starting:
            if self._open:
                return
            try:
                await self._writer.start()  # first: it creates the file and the schema
                await self._reader.start()
                await self._checkpointer.start()
                if self._synchronous == "NORMAL":  # a FULL commit syncs: never on the loop
                    self._here = self._open_here()
            except BaseException:
                await self._close_lanes()
                raise
            self._open = True

    async def close(self) -> None:
        """Finish what is queued, then close. A checkpoint not yet due is dropped: SQLite
        checkpoints when the last connection to the file closes."""
        self._open = False
        here, self._here = self._here, None
        if self._pending:  # made before close(): they go to the lane, which finishes them
            pending, self._pending = self._pending, []
            self._to_lane([call for call in pending if not call.abandoned])
        if here is not None:
            here.close()
        due, self._checkpoint_due = self._checkpoint_due, None
        if due is not None:
            due.cancel()
            await asyncio.gather(due, return_exceptions=True)
        await self._close_lanes()

    async def write(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the next group transaction (on the loop at the end of this round,
        or on the writer lane); returns once it committed. Timed as `what`, waits included."""
        started = time.perf_counter()
        try:
            if self._here is None:  # not open: the lane says so
                return await self._writer.call(what, work)
            call = Call(what, work, asyncio.get_running_loop().create_future())
            self._pending.append(call)
            if len(self._pending) == 1:
                asyncio.get_running_loop().call_soon(self._run_pending)
            return cast(T, await awaited(call))
        finally:
            self._timer.observe(what, time.perf_counter() - started)

    async def read(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work`, which only reads, on the reader's connection."""
        return await self._timer.timed(what, self._reader.call(what, work))

    async def checkpoint(self) -> WalCheckpoint:
        """Copy the write-ahead log into the database file now (it also happens by itself
        after writes)."""
        return await self._checkpointer.call("checkpoint", checkpoint)

    def _run_pending(self) -> None:
        """On the loop: the writes made since the last group as one group, here if the lock
        is free at once. While earlier writes are still on the lane these wait for them
        (`_heard_back` runs them), so writes keep their order without every later write
        paying the lane's thread hand-offs too."""
        if self._on_lane and self._here is not None:
            return
        calls = [call for call in self._pending[:MAX_GROUP] if not call.abandoned]
        del self._pending[:MAX_GROUP]
        if self._pending:  # a storm: the rest in the next round, the loop not held long
            asyncio.get_running_loop().call_soon(self._run_pending)
        if not calls:
            return
        here = self._here
        if here is None:
            self._to_lane(calls)
            return
        try:
            here.execute("BEGIN IMMEDIATE")
            outcomes = run_in_transaction(here, calls)
        except sqlite3.Error:
            # Busy (another connection writes) or failing: rolled back, nothing of the group
            # was written. The lane waits for the lock, retries and reports errors.
            with contextlib.suppress(sqlite3.Error):
                if here.in_transaction:
                    here.execute("ROLLBACK")
            self._to_lane(calls)
            return
        for call, outcome in zip(calls, outcomes, strict=True):
            settle(call, outcome)
        self._wrote()

    def _to_lane(self, calls: list[Call]) -> None:
        try:
            self._writer.enqueue(calls)
        except StokerError as exc:  # the lane is closed
            for call in calls:
                settle(call, (False, exc))
            return
        self._on_lane += len(calls)
        for call in calls:
            call.future.add_done_callback(self._heard_back)

    def _heard_back(self, _: asyncio.Future[Any]) -> None:
        self._on_lane -= 1
        if not self._on_lane and self._pending:
            self._run_pending()

    async def _close_lanes(self) -> None:
        # The writer first: what it still commits is then checkpointed by the last close.
        for lane in (self._writer, self._checkpointer, self._reader):
            await lane.close()

    def _wrote(self) -> None:
        """On the loop, after a write group committed: a checkpoint follows within the
        interval."""
        if not self._open:
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
            log.warning("sqlite checkpoint failed", path=str(self.path), error=str(exc))

    # The openers run on the lanes' threads.

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: the writer lane opens its transactions itself.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._failure(f"{self.path}: WAL mode refused (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._migrate(conn)
                conn.execute("COMMIT")
                # From now on the lane asks for the lock itself (lock_wait_s), sooner than
                # SQLite's busy handler would.
                conn.execute("PRAGMA busy_timeout = 0")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_here(self) -> sqlite3.Connection:
        # Pragmas are per connection: the same durability as the writer lane's, no busy wait
        # (a busy file sends the group to the lane) and no checkpoints in commits.
        conn = self._connect()
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the schema, read
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")  # a write here would be a bug: refuse it
        return conn


def run_script(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    """Run DDL statements one by one. (`executescript` would commit the transaction the
    schema is created in first.)"""
    for statement in statements:
        conn.execute(statement)
