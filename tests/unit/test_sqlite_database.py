"""The SQLite model every adapter shares (`stoker.adapters.sqlite.SqliteDatabase`): writes
queued together commit together, yet each is all or nothing and a write's own error
spares the others; errors are told apart by SQLite's result code."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stoker.adapters.sqlite import SqliteDatabase, translate
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.store_rules import StoreFailure

WAIT_BOUND_S = 30.0
"""Only turns a hang into a failure."""


def make_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(
        tmp_path / "test.db", label="test", migrate=make_table, failure=StoreFailure
    )
    await database.start()
    try:
        yield database
    finally:
        await database.close()


def insert(key: str) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (key,))
        return key

    return work


def refuse(_: sqlite3.Connection) -> None:
    raise ValueError("refused before writing anything")


def bad_sql(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO nowhere VALUES (1)")


async def keys(db: SqliteDatabase) -> set[str]:
    rows = await db.read("keys", lambda conn: conn.execute("SELECT k FROM t").fetchall())
    return {str(row[0]) for row in rows}


async def writes_while_the_writer_is_busy(
    db: SqliteDatabase, works: list[Callable[[sqlite3.Connection], object]]
) -> list[object]:
    """Make `works` in one round of the loop while another connection holds the file's write
    lock (and writes 'busy'), then free the lock: the writes made in one round run as one
    group, whether on the loop or on the writer lane that waited for the lock. Returns each
    one's result or error."""
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (k) VALUES ('busy')")
        tasks = [asyncio.create_task(db.write(f"w{n}", work)) for n, work in enumerate(works)]
        # One turn of the loop: each task runs to its first suspension, which is after its
        # write is made.
        await asyncio.sleep(0)
        other.execute("COMMIT")
    finally:
        other.close()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_writes_own_error_spares_the_writes_queued_with_it(db: SqliteDatabase) -> None:
    outcomes = await writes_while_the_writer_is_busy(db, [insert("a"), refuse, insert("b")])
    assert outcomes[0] == "a"
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == "b"
    assert await keys(db) == {"busy", "a", "b"}


async def test_an_sqlite_error_leaves_no_write_half_done(db: SqliteDatabase) -> None:
    """A statement SQLite refuses fails its write with the adapter's failure (not
    retriable); a write that reports success is stored, one that fails is not."""
    outcomes = await writes_while_the_writer_is_busy(
        db, [insert("a"), bad_sql, refuse, insert("b")]
    )
    assert isinstance(outcomes[1], StoreFailure)
    assert outcomes[1].retriable is False
    assert "SQLITE_ERROR" in str(outcomes[1])
    stored = await keys(db)
    for key, outcome in (("a", outcomes[0]), ("b", outcomes[3])):
        assert (key in stored) == (outcome == key)
    assert "busy" in stored
    assert await db.write("after", insert("c")) == "c"


async def test_a_write_waits_for_a_lock_held_briefly_and_lands(tmp_path: Path) -> None:
    """A lock another connection frees within the busy timeout costs a wait, not an error."""
    path = tmp_path / "test.db"
    db = SqliteDatabase(path, label="test", migrate=make_table, failure=StoreFailure)
    await db.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(db.write("w", insert("a")))
        assert await keys(db) == set()  # the reader answers meanwhile
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, WAIT_BOUND_S) == "a"
    finally:
        other.close()
        await db.close()


def delete(key: str) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        return conn.execute("DELETE FROM t WHERE k = ?", (key,)).rowcount

    return work


async def test_a_write_made_after_one_that_waited_for_the_lock_runs_after_it(
    db: SqliteDatabase,
) -> None:
    """The first write finds the file locked and waits on the writer lane; a write made once
    the lock is free still runs after it (run first, it would find nothing to delete)."""
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(db.write("first", insert("a")))
        assert await keys(db) == set()  # meanwhile the first write's group found the lock
        other.execute("COMMIT")
    finally:
        other.close()
    assert await asyncio.wait_for(db.write("second", delete("a")), WAIT_BOUND_S) == 1
    assert await first == "a"
    assert await keys(db) == set()


async def test_two_opens_of_a_new_file_at_once_create_it_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "test.db"
    first, second = (
        SqliteDatabase(path, label="test", migrate=make_table, failure=StoreFailure)
        for _ in range(2)
    )
    await asyncio.gather(first.start(), second.start())
    try:
        await first.write("w", insert("a"))
        assert await keys(second) == {"a"}
    finally:
        await first.close()
        await second.close()


async def test_a_path_that_cannot_be_opened_is_an_outage(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path, label="test", migrate=make_table, failure=StoreFailure)
    with pytest.raises(InfrastructureUnavailable, match="SQLITE_CANTOPEN"):
        await db.start()


def test_errors_are_told_apart_by_result_code(tmp_path: Path) -> None:
    """A busy file is a retriable outage and a missing table a failure, by their result
    codes: an error that only says "database is locked", without SQLite's code, is no
    outage."""
    path = tmp_path / "test.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("CREATE TABLE t (k TEXT)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            waiter.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as missing:
            waiter.execute("SELECT * FROM nowhere")
    finally:
        holder.close()
        waiter.close()
    outage = translate(busy.value, "test", StoreFailure)
    assert isinstance(outage, InfrastructureUnavailable)
    assert outage.retriable is True
    failure = translate(missing.value, "test", StoreFailure)
    assert isinstance(failure, StoreFailure)
    assert failure.retriable is False
    words_only = translate(sqlite3.OperationalError("database is locked"), "test", StoreFailure)
    assert isinstance(words_only, StoreFailure)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("synchronous", "OFF", "synchronous must be 'NORMAL' or 'FULL', got 'OFF'"),
        ("busy_timeout_ms", -1, "busy_timeout_ms must be >= 0, got -1"),
        ("checkpoint_interval_s", -0.5, "checkpoint_interval_s must be >= 0, got -0.5"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    tmp_path: Path, setting: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SqliteDatabase(
            tmp_path / "test.db",
            label="test",
            migrate=make_table,
            failure=StoreFailure,
            **{setting: value},  # type: ignore[arg-type]
        )
