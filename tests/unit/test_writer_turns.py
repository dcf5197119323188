"""Writers of one SQLite file take turns on a lock file beside it: a held turn keeps other
handles (other processes) out, and it is given back on leaving, on an error, on close and
when the holding process is killed."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.adapters.store.writer_turns import WriterTurns, lock_path
from stoker.core.job import JobRecord

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@contextmanager
def opened(database: Path) -> Iterator[WriterTurns]:
    turns = WriterTurns(database)
    turns.open()
    try:
        yield turns
    finally:
        turns.close()


def someone_holds_the_turn(database: Path) -> bool:
    """Asks the kernel without waiting, through a handle of its own."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_the_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "jobs.sqlite3") == tmp_path / "jobs.sqlite3-writer.lock"


def test_a_held_turn_keeps_other_writers_out_until_it_is_left(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    with opened(database) as turns:
        assert not someone_holds_the_turn(database)
        with turns.turn():
            assert someone_holds_the_turn(database)
        assert not someone_holds_the_turn(database)


def test_an_error_inside_the_turn_gives_it_back(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    with opened(database) as turns:
        with pytest.raises(ValueError, match="inside"), turns.turn():
            raise ValueError("inside")
        assert not someone_holds_the_turn(database)


def test_closing_gives_back_a_turn_still_held(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    turns = WriterTurns(database)
    turns.open()
    held = turns.turn()
    held.__enter__()
    assert someone_holds_the_turn(database)
    turns.close()
    assert not someone_holds_the_turn(database)


def test_a_turn_needs_the_lock_file_open(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"), WriterTurns(tmp_path / "db").turn():
        pass


def test_a_killed_holder_leaves_the_turn_free(tmp_path: Path) -> None:
    """SIGKILL mid-transaction: the kernel frees the lock with the process."""
    database = tmp_path / "jobs.db"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from stoker.adapters.store.writer_turns import WriterTurns
        turns = WriterTurns(Path({str(database)!r}))
        turns.open()
        with turns.turn():
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            assert someone_holds_the_turn(database)
            holder.send_signal(signal.SIGKILL)
            assert holder.wait(timeout=30) == -signal.SIGKILL
            assert not someone_holds_the_turn(database)
        finally:
            if holder.poll() is None:
                holder.kill()


async def test_two_stores_on_one_file_write_in_turns_and_lose_nothing(tmp_path: Path) -> None:
    """Two stores (as two processes) each create 200 jobs at once, in groups and singly:
    every job is created and readable from the other store, and no turn is left held."""
    database = tmp_path / "jobs.db"
    first, second = SqliteJobStore(database), SqliteJobStore(database)
    await first.start()
    await second.start()
    try:
        created = await asyncio.gather(
            *(
                store.create(
                    JobRecord(job_id=f"{name}-{i}", owner="alice", created_at=T0, updated_at=T0)
                )
                for i in range(200)
                for name, store in (("first", first), ("second", second))
            )
        )
        assert all(was_created for _, was_created in created)
        for name in ("first", "second"):
            for i in range(200):
                assert (await first.get(f"{name}-{i}")).job_id == f"{name}-{i}"
        assert not someone_holds_the_turn(database)
    finally:
        await first.close()
        await second.close()


async def test_a_write_waiting_for_a_turn_held_elsewhere_is_reported_then_lands(
    tmp_path: Path,
) -> None:
    """A turn held by another process (here another handle) makes a write wait with no time
    limit: the store warns each busy timeout, and the write lands once the turn is free."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=20)
    await store.start()
    try:
        with structlog.testing.capture_logs() as logs, opened(database) as other:
            held = other.turn()
            held.__enter__()
            write = asyncio.create_task(
                store.create(JobRecord(job_id="j1", owner="alice", created_at=T0, updated_at=T0))
            )
            deadline = asyncio.get_running_loop().time() + 30
            while not [e for e in logs if e["event"].startswith("sqlite call still waiting")]:
                assert asyncio.get_running_loop().time() < deadline, "no waiting report"
                assert not write.done()
                await asyncio.sleep(0.01)  # polling interval of the wait, bounded above
            held.__exit__(None, None, None)
            _, created = await write
        assert created is True
        report = next(e for e in logs if e["event"].startswith("sqlite call still waiting"))
        assert report["operation"] == "create"
        assert report["path"] == str(database)
        assert report["log_level"] == "warning"
    finally:
        await store.close()


async def test_a_read_does_not_wait_for_a_write_stuck_ahead_of_it(tmp_path: Path) -> None:
    """Reads run on a lane of their own (ADR 0011): while a write waits for a turn that
    another process holds (without a time limit), a read of the same store answers, and
    the write lands once the turn is free. With one lane the read queued behind the write."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database)
    await store.start()
    try:
        await store.create(JobRecord(job_id="j0", owner="alice", created_at=T0, updated_at=T0))
        with opened(database) as other:
            held = other.turn()
            held.__enter__()
            write = asyncio.create_task(
                store.create(JobRecord(job_id="j1", owner="alice", created_at=T0, updated_at=T0))
            )
            # The bound only turns a hang (the read queued behind the write) into a failure.
            read = await asyncio.wait_for(store.get("j0"), timeout=30)
            assert read.job_id == "j0"
            assert not write.done()
            held.__exit__(None, None, None)
            _, created = await write
        assert created is True
        assert (await store.get("j1")).job_id == "j1"
    finally:
        await store.close()


def test_take_without_waiting_says_whether_it_got_the_turn(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    with opened(database) as first, opened(database) as second:
        assert first.take(wait=False) is True
        assert second.take(wait=False) is False  # held: refused at once, nothing waits
        first.give_back()
        assert second.take(wait=False) is True
        assert someone_holds_the_turn(database)
        second.give_back()
        assert not someone_holds_the_turn(database)
