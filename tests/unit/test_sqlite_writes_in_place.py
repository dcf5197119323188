"""ADR 0017: the SQLite store runs write groups on the event loop. Only a wait for the
writer turn happens on its writer thread; a writer that does not take turns sends the group
to the thread, which waits for SQLite's lock. Nothing is lost either way."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.job import JobRecord
from tests.support.waiting import wait_until
from tests.unit.test_writer_turns import opened, someone_holds_the_turn

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WAIT_BOUND_S = 30.0
"""Only turns a hang into a failure."""
POLL_S = 0.01
"""How often a condition nothing signals (the kernel's lock, a log line) is checked."""


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, owner="alice", created_at=T0, updated_at=T0)


def inserts_by_thread(store: SqliteJobStore) -> list[int]:
    """Records the thread of every job insert on the store's in-place writing connection
    from now on."""
    threads: list[int] = []
    conn = store._writes_in_place
    assert conn is not None

    def seen(statement: str) -> None:
        if statement.startswith("INSERT INTO jobs"):
            threads.append(threading.get_ident())

    conn.set_trace_callback(seen)
    return threads


def waiting_reported(logs: Sequence[Mapping[str, object]]) -> Callable[[], bool]:
    """Whether the store said a call waits for the turn: the thread is then in its wait."""
    return lambda: any(str(e["event"]).startswith("sqlite call still waiting") for e in logs)


async def test_a_write_runs_on_the_event_loop_when_the_turn_is_free(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    try:
        threads = inserts_by_thread(store)
        created = await asyncio.gather(*(store.create(job(f"j{n}")) for n in range(20)))
        assert all(was_created for _, was_created in created)
        assert threads == [threading.get_ident()] * 20
        assert not someone_holds_the_turn(tmp_path / "jobs.db")
    finally:
        await store.close()


async def test_a_write_that_waited_for_a_turn_held_elsewhere_runs_on_the_event_loop(
    tmp_path: Path,
) -> None:
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=20)
    await store.start()
    try:
        threads = inserts_by_thread(store)
        with structlog.testing.capture_logs() as logs, opened(database) as other:
            assert other.take(wait=False)
            write = asyncio.create_task(store.create(job("j1")))
            await wait_until(waiting_reported(logs), WAIT_BOUND_S, POLL_S)
            assert not write.done()
            other.give_back()
            _, created = await asyncio.wait_for(write, WAIT_BOUND_S)
        assert created is True
        assert threads == [threading.get_ident()]
        assert (await store.get("j1")).job_id == "j1"
        assert not someone_holds_the_turn(database)
    finally:
        await store.close()


async def test_a_writer_that_takes_no_turn_sends_the_group_to_the_thread(tmp_path: Path) -> None:
    """A connection that holds SQLite's write lock without the turn (the `sqlite3` shell, an
    older stoker): the in-place try fails at once and the writer thread waits for the lock
    with the busy timeout, so the loop never waits and the write lands."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database)
    await store.start()
    foreign = sqlite3.connect(database, isolation_level=None)
    try:
        threads = inserts_by_thread(store)
        foreign.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.create(job("j1")))
        for _ in range(3):  # the group's try on the loop, which hands it to the thread
            await asyncio.sleep(0)
        assert not write.done()
        assert (await store.get_many(["j0"])) == {}  # the loop answers meanwhile
        foreign.execute("COMMIT")
        _, created = await asyncio.wait_for(write, WAIT_BOUND_S)
        assert created is True
        assert threads == []  # written by the thread's connection
        assert (await store.get("j1")).job_id == "j1"
    finally:
        foreign.close()
        await store.close()


async def test_a_group_cancelled_while_its_turn_is_awaited_gives_the_turn_back(
    tmp_path: Path,
) -> None:
    """The thread that waits for the turn gets it even if nobody waits any more; it must not
    keep it, or every other writer of the file would wait for ever."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=20)
    await store.start()
    try:
        with structlog.testing.capture_logs() as logs, opened(database) as other:
            assert other.take(wait=False)
            write = asyncio.create_task(store.create(job("j1")))
            await wait_until(waiting_reported(logs), WAIT_BOUND_S, POLL_S)
            assert store._writer is not None
            assert store._writer.draining is not None
            store._writer.draining.cancel()
            await asyncio.gather(write, return_exceptions=True)
            other.give_back()
            await wait_until(lambda: not someone_holds_the_turn(database), WAIT_BOUND_S, POLL_S)
        _, created = await store.create(job("j2"))
        assert created is True
    finally:
        await store.close()
