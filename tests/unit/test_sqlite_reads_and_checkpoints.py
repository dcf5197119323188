"""The SQLite store's commits never checkpoint the write-ahead log: a thread of the store
does, within an interval after writes; writes only in the log are as safe as any."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stoker.adapters.sqlite.checkpoints import WalCheckpoint, checkpoint, needs_full
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.errors import JobNotFound
from stoker.core.job import JobRecord
from tests.support.waiting import wait_until

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NEVER_S = 3600.0
"""A checkpoint interval no test outlives: only explicit checkpoints run."""
WAIT_BOUND_S = 30.0
"""Only turns a hang into a failure."""


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


async def test_point_reads_answer_and_say_what_is_missing(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    try:
        await store.create(job("j1"))
        assert (await store.get("j1")).job_id == "j1"
        assert [line.version for line in await store.history("j1")] == [1]
        assert list(await store.get_many(["j1", "nobody"])) == ["j1"]
        with pytest.raises(JobNotFound):
            await store.get("nobody")
        with pytest.raises(JobNotFound):
            await store.history("nobody")
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
        # Another thread checkpoints; the file is the only sign of it.
        await wait_until(lambda: in_the_file_itself(database, "j1"), WAIT_BOUND_S, 0.01)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("checkpoint_interval_s", -1, "checkpoint_interval_s must be >= 0, got -1"),
        ("busy_timeout_ms", -5, "busy_timeout_ms must be >= 0, got -5"),
    ],
)
def test_settings_below_zero_are_refused(
    tmp_path: Path, setting: str, value: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SqliteJobStore(tmp_path / "jobs.db", **{setting: value})  # type: ignore[arg-type]


def test_only_a_long_log_is_finished_with_writers_held_off() -> None:
    limit = 8192
    assert needs_full(WalCheckpoint(False, 9000, 8000), full_from_frames=limit)
    # Counted when the pass began: writes since then are not in it, so a long log gets a
    # FULL pass even when the PASSIVE one reports every frame copied.
    assert needs_full(WalCheckpoint(False, 9000, 9000), full_from_frames=limit)
    assert not needs_full(WalCheckpoint(False, 100, 50), full_from_frames=limit)
    # Another connection is checkpointing: it does the work.
    assert not needs_full(WalCheckpoint(True, -1, -1), full_from_frames=limit)


@pytest.mark.parametrize("full_from_frames", [1, 10_000])
def test_a_checkpoint_copies_the_whole_log_and_it_starts_over(
    tmp_path: Path, full_from_frames: int
) -> None:
    """Whether or not the log was long enough for a FULL pass, a checkpoint with no writer
    busy copies all of it, and the next write starts the log over."""
    database = tmp_path / "jobs.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x TEXT)")
    for _ in range(20):
        writer.execute("INSERT INTO t VALUES (?)", ("y" * 5000,))
    checkpointer = sqlite3.connect(database, isolation_level=None)
    try:
        done = checkpoint(checkpointer, full_from_frames=full_from_frames)
        assert done.complete
        assert done.log_frames >= 20
        writer.execute("INSERT INTO t VALUES ('z')")
        again = checkpoint(checkpointer, full_from_frames=full_from_frames)
        assert again.complete
        assert again.log_frames < done.log_frames
    finally:
        checkpointer.close()
        writer.close()
