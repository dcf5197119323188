"""A lane: one thread with one SQLite connection, running the calls queued for it.

Every statement stoker runs on a SQLite file runs on a lane, never on the event loop: a
statement may wait for another connection's lock (up to the busy timeout) or for the disk,
and the loop must not. A call is a function of the lane's connection; `call()` queues it
and returns its result (or raises its error) on the event loop.

Group commit. The lane takes the calls that queued while it ran the last group, in arrival
order (at most `MAX_GROUP`), and runs them as one group. A lane given a `transaction` (the
writer's `BEGIN IMMEDIATE`) wraps the group in one transaction, so a burst of writes costs
one commit, one thread hand-off and one wake-up of the loop, and every caller hears back
only after that commit. A lane without one (readers, the checkpointer) runs the calls one
after another, each statement on its own snapshot.

A call's own error (a version conflict, a missing row) is its outcome alone, and the group
commits without it. There is no savepoint per call (one would cost more than the call), so
a call must decide everything before its first statement: its own error then comes before
it wrote anything, and its statements either all succeed or raise an SQLite error. An
SQLite error aborts the whole group: it is rolled back and, when the error is retriable
(the file was busy), run again under `BUSY_RETRY`, else every caller gets the error,
translated by result code (`stoker.adapters.sqlite.errors`).

Waiting for the file's write lock. SQLite's own busy handler sleeps on a fixed schedule (1,
2, 5, 10 ... 100 ms), so a writer that found another process's lock woke tens of
milliseconds after it was freed, and under two busy writers (the API or a submitting
process beside the services) that wait was most of a write's latency. A lane given a
`lock_wait_s` opens its transaction with the connection's busy timeout at zero and asks
again itself, every 0.2 to 2 ms, for at most that long (`LOCK_WAIT`): the lock is taken
soon after it is freed, and the wait stays bounded.

A caller that is cancelled before its call runs is dropped from the group; one cancelled
while its group runs does not stop it, and the outcome is dropped. Either way the call ran
completely or not at all.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import structlog
import tenacity

from stoker.adapters.sqlite.errors import is_busy, translate
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.retry import RetryPolicy

T = TypeVar("T")

log = structlog.get_logger("stoker.adapters.sqlite")

MAX_GROUP = 256
"""Calls run in one group at most."""

BUSY_RETRY = RetryPolicy(initial_delay_s=0.05, multiplier=2.0, max_delay_s=0.5, max_attempts=3)
"""A group that failed on a retriable error is run again this way. Each try already waited
up to the busy timeout for the lock; the retry covers the waits SQLite does not take itself
(a snapshot that went stale, a log being recovered) and a lock held a little too long."""

LOCK_WAIT = RetryPolicy(
    initial_delay_s=0.0002, multiplier=2.0, max_delay_s=0.002, jitter=0.5, max_attempts=1_000_000
)
"""How a lane with a `lock_wait_s` asks again for a write lock another connection holds; its
deadline, not the attempts, ends the wait."""

OPEN_WAIT_S = 30.0
"""How long a lane keeps asking to open a file whose lock another process holds."""

Work = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]
"""(True, result) or (False, the call's own error)."""


@dataclass(eq=False)
class Call:
    """One queued function of a connection and the future its caller awaits."""

    what: str
    work: Work
    future: asyncio.Future[Any]
    abandoned: bool = False
    """Set on the loop when the caller was cancelled; the lane then skips the call if it
    has not started it."""


@dataclass(eq=False)
class _Running:
    """A started lane: its queue (`None` in it asks the thread to stop) and the futures
    its thread settles when the connection is open and when it has ended."""

    opened: asyncio.Future[None]
    stopped: asyncio.Future[None]
    queue: queue.SimpleQueue[Call | None] = field(default_factory=queue.SimpleQueue)
    closing: bool = False


class Lane:
    """One thread, its connection, and the calls queued for it.

    name: the thread's name suffix ("write", "read", ...).
    label: how errors and logs name the file (e.g. "sqlite store /data/jobs.sqlite3").
    connect: opens the lane's connection, on the lane's thread.
    transaction: the statement that opens a group's transaction, or None for no transaction.
    failure: the adapter's error class for SQLite errors no retry will fix.
    on_commit: called on the event loop after each group that committed.
    lock_wait_s: for a lane whose connection has no busy timeout: how long the opening of a
        group's transaction asks again (`LOCK_WAIT`) while another connection holds the lock.
    """

    def __init__(
        self,
        name: str,
        label: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        transaction: str | None,
        failure: type[StokerError],
        on_commit: Callable[[], None] | None = None,
        retry: RetryPolicy = BUSY_RETRY,
        lock_wait_s: float | None = None,
    ) -> None:
        self.name = name
        self.label = label
        self._connect = connect
        self._transaction = transaction
        self._failure = failure
        self._on_commit = on_commit
        self._retry = retry
        self._lock_wait_s = lock_wait_s
        self._running: _Running | None = None

    async def start(self) -> None:
        """Start the thread and open its connection; raises the translated error if the
        connection cannot be opened."""
        if self._running is not None:
            return
        loop = asyncio.get_running_loop()
        running = _Running(opened=loop.create_future(), stopped=loop.create_future())
        self._running = running
        threading.Thread(
            target=self._serve,
            args=(running,),
            name=f"stoker-sqlite-{self.name}",
            # A file nobody closed must not keep the interpreter from exiting; SQLite rolls
            # back a transaction cut short, so the file stays whole.
            daemon=True,
        ).start()
        try:
            await running.opened
        except BaseException:
            # A thread that could not connect has ended; one still connecting ends after.
            running.queue.put(None)
            self._running = None
            raise

    async def call(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Queue `work` (a function of the connection, named `what` in errors and logs) and
        return what it returns, once its group is done."""
        call = Call(what, work, asyncio.get_running_loop().create_future())
        self.enqueue([call])
        return cast(T, await awaited(call))

    def enqueue(self, calls: list[Call]) -> None:
        """Queue calls whose callers await their futures (`awaited`), in this order."""
        running = self._running
        if running is None or running.closing:
            raise self._failure(f"{self.label} is not open (start() it first)")
        for call in calls:
            running.queue.put(call)

    async def close(self) -> None:
        """Run what is queued, then close the connection and end the thread."""
        running = self._running
        if running is None:
            return
        if not running.closing:
            running.closing = True
            running.queue.put(None)
        try:
            await asyncio.shield(running.stopped)
        finally:
            if self._running is running:
                self._running = None

    # Everything below runs on the lane's thread.

    def _serve(self, running: _Running) -> None:
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = self._open_waiting()
            except Exception as exc:
                self._settle_soon(running.opened, (False, self._open_failure(exc)))
                return
            self._settle_soon(running.opened, (True, None))
            while (group := self._next_group(running)) is not None:
                self._run(conn, group)
        finally:
            if conn is not None:
                conn.close()
            running.closing = True
            self._fail_queued(running)
            self._settle_soon(running.stopped, (True, None))

    def _fail_queued(self, running: _Running) -> None:
        """Answer what is still queued when the thread ends (only if it ended early)."""
        left: list[Call] = []
        while True:
            try:
                call = running.queue.get_nowait()
            except queue.Empty:
                break
            if call is not None:
                left.append(call)
        if left:
            stopped = self._failure(f"{self.label} stopped before running this call")
            self._deliver(left, [(False, stopped)] * len(left), wrote=False)

    def _next_group(self, running: _Running) -> list[Call] | None:
        """The calls queued since the last group (waiting for the first), or None to stop."""
        first = running.queue.get()
        if first is None:
            return None
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                more = running.queue.get_nowait()
            except queue.Empty:
                break
            if more is None:  # stop after this group: nothing is queued behind it
                running.queue.put(None)
                break
            group.append(more)
        return group

    def _run(self, conn: sqlite3.Connection, group: list[Call]) -> None:
        calls = [call for call in group if not call.abandoned]
        if not calls:
            return
        try:
            outcomes = self._tries(conn, calls)
        except BaseException as exc:  # the whole group failed
            self._deliver(calls, [(False, exc)] * len(calls), wrote=False)
            if not isinstance(exc, Exception):
                raise
            return
        self._deliver(calls, outcomes, wrote=self._transaction is not None)

    def _tries(self, conn: sqlite3.Connection, calls: list[Call]) -> list[Outcome]:
        what = ",".join(sorted({call.what for call in calls}))

        def warn(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "sqlite busy; running the group again",
                file=self.label,
                operation=what,
                attempt=state.attempt_number,
                error=str(error),
            )

        return self._retry.call_blocking(lambda: self._once(conn, calls, what), before_sleep=warn)

    def _once(self, conn: sqlite3.Connection, calls: list[Call], what: str) -> list[Outcome]:
        try:
            if self._transaction is None:
                return [_outcome(call, conn) for call in calls]
            self._begin(conn, self._transaction)
            return run_in_transaction(conn, calls)
        except sqlite3.Error as exc:
            raise self._translated(exc, what) from exc

    def _begin(self, conn: sqlite3.Connection, transaction: str) -> None:
        """Open the group's transaction, asking again for the lock while it is busy."""
        try:
            conn.execute(transaction)
            return
        except sqlite3.Error as exc:
            if self._lock_wait_s is None or not is_busy(exc):
                raise
        for attempt in LOCK_WAIT.retrying_blocking(retry_on=_busy, deadline_s=self._lock_wait_s):
            with attempt:
                conn.execute(transaction)

    def _open_waiting(self) -> sqlite3.Connection:
        """Open the connection, asking again while another process holds the file's lock
        past the busy timeout (its own start, or a checkpoint on a loaded machine)."""
        for attempt in LOCK_WAIT.retrying_blocking(retry_on=_busy, deadline_s=OPEN_WAIT_S):
            with attempt:
                return self._connect()
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _open_failure(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            return self._translated(exc, "open")
        if isinstance(exc, OSError):  # the folder could not be made
            return InfrastructureUnavailable(f"{self.label} open: {exc}")
        return exc

    def _translated(self, exc: sqlite3.Error, what: str) -> StokerError:
        return translate(exc, f"{self.label} {what}", self._failure)

    def _deliver(self, calls: list[Call], outcomes: list[Outcome], *, wrote: bool) -> None:
        """Hand the outcomes to the loop(s) of the callers, in one callback per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Call, Outcome]]] = {}
        for call, outcome in zip(calls, outcomes, strict=True):
            by_loop.setdefault(call.future.get_loop(), []).append((call, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, settled, wrote)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                continue

    def _settle_soon(self, future: asyncio.Future[Any], outcome: Outcome) -> None:
        try:
            future.get_loop().call_soon_threadsafe(_set, future, outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            return

    # On the event loop.

    def _settle(self, settled: list[tuple[Call, Outcome]], wrote: bool) -> None:
        for call, outcome in settled:
            _set(call.future, outcome)
        if wrote and self._on_commit is not None:
            self._on_commit()


def _set(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if future.done():  # its caller was cancelled; the work itself is done
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def awaited(call: Call) -> Any:
    """The result of a queued call; a caller cancelled before it ran drops it."""
    try:
        return await call.future
    except asyncio.CancelledError:
        call.abandoned = True
        raise


def run_in_transaction(conn: sqlite3.Connection, calls: list[Call]) -> list[Outcome]:
    """Run `calls` in the transaction just opened on `conn` and commit it; each call's own
    error is its outcome, an SQLite error rolls the whole group back and is raised."""
    try:
        outcomes = [_outcome(call, conn) for call in calls]
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT too: the connection is never left inside a transaction.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def settle(call: Call, outcome: Outcome) -> None:
    """Hand `outcome` to the call's caller (on the caller's loop)."""
    _set(call.future, outcome)


def _busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.Error) and is_busy(error)


def _outcome(call: Call, conn: sqlite3.Connection) -> Outcome:
    try:
        return True, call.work(conn)
    except sqlite3.Error:
        raise  # aborts the group
    except Exception as exc:
        return False, exc
