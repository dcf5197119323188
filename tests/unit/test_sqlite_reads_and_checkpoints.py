"""ADR 0015: the SQLite store answers point reads in place, on the event loop, and its
commits never checkpoint the write-ahead log; a thread of the store does, after writes."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.adapters.store.wal_checkpoints import WalCheckpoint, checkpoint, needs_turn
from stoker.adapters.store.writer_turns import WriterTurns
from stoker.core.errors import JobNotFound
from stoker.core.job import JobRecord
from stoker.core.store_rules import StoreFailure

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NEVER_S = 3600.0
"""A checkpoint interval no test outlives: only explicit checkpoints run."""


def in_the_file_itself(database: Path, job_id: str) -> bool:
    """Whether the job is in the database file, without its log (a copy without `-wal`)."""
    alone = database.with_name(f"alone-{database.name}")
    shutil.copyfile(database, alone)
    conn = sqlite3.connect(alone)
    try:
        found = conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    except sqlite3.OperationalError:  # not even the schema is there
        found = None
    finally:
        conn.close()
        alone.unlink()
    return found is not None


def job(job_id: str, padding: int = 0) -> JobRecord:
    spec = {"padding": "x" * padding} if padding else {}
    return JobRecord(job_id=job_id, owner="alice", spec=spec, created_at=T0, updated_at=T0)


async def test_a_point_read_answers_without_leaving_the_event_loop(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    try:
        await store.create(job("j1"))
        # Driven by hand: a read that hopped to a thread would suspend on its first step.
        for read in (store.get("j1"), store.history("j1"), store.get_many(["j1"])):
            with pytest.raises(StopIteration) as answered:
                read.send(None)
            assert answered.value.value is not None
        with pytest.raises(StopIteration) as answered:
            store.get("j1").send(None)
        assert answered.value.value.job_id == "j1"
        with pytest.raises(JobNotFound):
            await store.get("nobody")
    finally:
        await store.close()


async def test_get_many_takes_more_ids_than_sqlite_takes_parameters(tmp_path: Path) -> None:
    """The ids go in as one JSON array: past SQLite's oldest limit of 999 parameters."""
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    try:
        for n in range(5):
            await store.create(job(f"j{n}"))
        unknown = [f"nobody-{n}" for n in range(1200)]
        found = await store.get_many(["j4", "j0", *unknown, "j2", "j3", "j1", "j0"])
        assert sorted(found) == ["j0", "j1", "j2", "j3", "j4"]
    finally:
        await store.close()


class _BusyOnce:
    """A connection that finds the file busy once, then is the real one again."""

    def __init__(self, real: sqlite3.Connection, error: sqlite3.Error) -> None:
        self.real = real
        self.error: sqlite3.Error | None = error

    def execute(self, *args: Any) -> sqlite3.Cursor:
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.real.execute(*args)


async def test_a_point_read_that_finds_the_file_busy_is_answered_by_the_read_lane(
    tmp_path: Path,
) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    real = store._in_place
    assert real is not None
    try:
        await store.create(job("j1"))
        busy = _BusyOnce(real, sqlite3.OperationalError("database is locked"))
        store._in_place = busy  # type: ignore[assignment]
        assert (await store.get("j1")).job_id == "j1"
        assert busy.error is None  # the in-place try met the busy file first

        broken = _BusyOnce(real, sqlite3.DatabaseError("file is not a database"))
        store._in_place = broken  # type: ignore[assignment]
        with pytest.raises(StoreFailure, match=r"sqlite get on .*file is not a database"):
            await store.get("j1")
    finally:
        store._in_place = real
        await store.close()


async def test_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    """SQLite's default would copy the log into the file inside the commit that takes it
    past 1,000 pages; here the file only grows when the store checkpoints."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, checkpoint_interval_s=NEVER_S)
    await store.start()
    try:
        for n in range(300):  # one transaction each, well past 1,000 pages of log
            await store.create(job(f"j{n:03d}", padding=3000))
        wal = database.with_name(f"{database.name}-wal").stat().st_size
        assert wal > 1000 * 4096
        assert not in_the_file_itself(database, "j000")

        done = await store.checkpoint()
        assert done.complete
        assert done.log_frames > 1000
        assert in_the_file_itself(database, "j000")
        assert in_the_file_itself(database, "j299")
    finally:
        await store.close()


async def test_writes_a_killed_process_never_checkpointed_are_not_lost(tmp_path: Path) -> None:
    """A process killed (SIGKILL) after its commits but before any checkpoint leaves its
    writes only in the log; a store opened afterwards reads every one of them."""
    database = tmp_path / "jobs.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from datetime import UTC, datetime
        from stoker.adapters.store.sqlite import SqliteJobStore
        from stoker.core.job import JobRecord

        async def main():
            store = SqliteJobStore({str(database)!r}, checkpoint_interval_s={NEVER_S})
            await store.start()
            t = datetime(2026, 3, 1, tzinfo=UTC)
            for n in range(50):
                await store.create(
                    JobRecord(job_id=f"j{{n:02d}}", owner="o", created_at=t, updated_at=t)
                )
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    killed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(killed.communicate(), timeout=120)
    assert killed.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert not in_the_file_itself(database, "j00")

    store = SqliteJobStore(database)
    await store.start()
    try:
        found = await store.get_many([f"j{n:02d}" for n in range(50)])
        assert len(found) == 50
    finally:
        await store.close()


async def test_a_write_is_checkpointed_within_the_interval(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, checkpoint_interval_s=0.01)
    await store.start()
    try:
        await store.create(job("j1"))
        deadline = asyncio.get_running_loop().time() + 30
        while not in_the_file_itself(database, "j1"):
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint came"
            await asyncio.sleep(0.01)  # polling interval of the wait, bounded above
    finally:
        await store.close()


def test_a_checkpoint_interval_below_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint_interval_s must be >= 0, got -1"):
        SqliteJobStore(tmp_path / "jobs.db", checkpoint_interval_s=-1)


def test_only_a_long_log_is_finished_within_a_writer_turn() -> None:
    limit = 8192
    assert needs_turn(WalCheckpoint(False, 9000, 8000), tail_under_turn_frames=limit)
    # Counted when the pass began: writes since then are not in it, so a long log takes a
    # turn even when the pass reports every frame copied.
    assert needs_turn(WalCheckpoint(False, 9000, 9000), tail_under_turn_frames=limit)
    assert not needs_turn(WalCheckpoint(False, 100, 50), tail_under_turn_frames=limit)
    # Another connection is checkpointing: it does the work.
    assert not needs_turn(WalCheckpoint(True, -1, -1), tail_under_turn_frames=limit)


class _CountedTurns(WriterTurns):
    def __init__(self, database: Path) -> None:
        super().__init__(database)
        self.taken = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with super().turn():
            self.taken += 1
            yield


@pytest.mark.parametrize(("limit", "turns_taken"), [(1, 1), (10_000, 0)])
def test_the_checkpointer_takes_a_turn_only_past_the_limit(
    tmp_path: Path, limit: int, turns_taken: int
) -> None:
    database = tmp_path / "jobs.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x TEXT)")
    for _ in range(20):
        writer.execute("INSERT INTO t VALUES (?)", ("y" * 5000,))
    turns = _CountedTurns(database)
    turns.open()
    checkpointer = sqlite3.connect(database, isolation_level=None)
    try:
        done = checkpoint(checkpointer, turns, tail_under_turn_frames=limit)
        assert done.complete
        assert done.log_frames >= 20
        assert turns.taken == turns_taken
    finally:
        checkpointer.close()
        turns.close()
        writer.close()
