"""Writers of one SQLite store file: reads do not wait for them, a cancelled write is all
or nothing, a lock held too long is a retriable outage, and two processes writing the same
file both succeed (SQLite's own locking keeps them apart)."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.errors import InfrastructureUnavailable, JobNotFound, VersionConflict
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.store_rules import StoreFailure

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WAIT_BOUND_S = 60.0
"""Only turns a hang into a failure."""


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, owner="alice", created_at=T0, updated_at=T0)


def created(record: JobRecord) -> list[tuple[str, CloudEvent]]:
    data = JobStatusChanged(
        job_id=record.job_id,
        owner=record.owner,
        version=record.version,
        from_status=None,
        to_status=record.status,
        attempt=record.attempt,
    )
    return [("lifecycle", CloudEvent.wrap(data, time=T0))]


@contextmanager
def write_lock_held(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as another process would) holding the file's write lock until
    the block ends."""
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_read_is_answered_while_a_write_waits_for_the_lock(tmp_path: Path) -> None:
    """Reads have a thread and connection of their own: while a write waits for the write
    lock another process holds, reads of the same store answer, and the write lands once
    the lock is free."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=int(WAIT_BOUND_S * 1000))
    await store.start()
    try:
        await store.create(job("j0"))
        with write_lock_held(database):
            write = asyncio.create_task(store.create(job("j1")))
            # Bounded: a read queued behind the write would wait as long as the lock.
            read = await asyncio.wait_for(store.get("j0"), WAIT_BOUND_S / 2)
            assert read.job_id == "j0"
            listed = await asyncio.wait_for(store.list_jobs(), WAIT_BOUND_S / 2)
            assert [j.job_id for j in listed.items] == ["j0"]
            assert not write.done()  # it cannot commit while the lock is held
        _, was_created = await asyncio.wait_for(write, WAIT_BOUND_S)
        assert was_created is True
        assert (await store.get("j1")).job_id == "j1"
    finally:
        await store.close()


async def test_cancelled_writes_are_all_or_nothing_and_the_rest_land(tmp_path: Path) -> None:
    """Writes cancelled while they wait (some before their turn, some while their
    transaction waits for the lock) either wrote the job, its history and its outbox
    event, or nothing; the writes not cancelled land, and the store keeps working."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=int(WAIT_BOUND_S * 1000))
    await store.start()
    ids = [f"j{n}" for n in range(12)]
    try:
        with write_lock_held(database):
            writes = {
                i: asyncio.create_task(store.create(job(i), outbox=created(job(i)))) for i in ids
            }
            await store.get_many(["j0"])  # a round trip to the store's threads meanwhile
            cancelled = set(ids[::3])
            for i in cancelled:
                writes[i].cancel()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*writes.values(), return_exceptions=True), WAIT_BOUND_S
        )
        for i, outcome in zip(writes, outcomes, strict=True):
            if i not in cancelled:
                assert outcome == (job(i), True)
        pending = {entry.event.subject for entry in await store.pending_outbox(limit=100)}
        for i in ids:
            try:
                history = await store.history(i)
            except JobNotFound:
                assert i in cancelled
                assert i not in pending
                assert await store.get_many([i]) == {}
                continue
            assert len(history) == 1
            assert i in pending
            assert (await store.get(i)).job_id == i
        assert (await store.create(job("after")))[1] is True
    finally:
        await store.close()


async def test_a_lock_held_past_the_busy_timeout_is_a_retriable_outage(tmp_path: Path) -> None:
    """SQLite's busy result code, not its message, makes the error: retriable, and the
    write left nothing behind."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database, busy_timeout_ms=20)
    await store.start()
    try:
        with write_lock_held(database), pytest.raises(InfrastructureUnavailable) as caught:
            await store.create(job("j1"))
        assert caught.value.retriable is True
        assert "SQLITE_BUSY" in str(caught.value)
        assert await store.get_many(["j1"]) == {}
        assert (await store.create(job("j1")))[1] is True
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_is_a_store_failure(tmp_path: Path) -> None:
    """A bad file is no outage: no retry would fix it."""
    database = tmp_path / "jobs.db"
    database.write_bytes(b"this is not a database" * 100)
    store = SqliteJobStore(database)
    with pytest.raises(StoreFailure) as caught:
        await store.start()
    assert caught.value.retriable is False
    assert "SQLITE_NOTADB" in str(caught.value)


async def test_a_store_not_started_or_closed_says_so(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    with pytest.raises(StoreFailure, match="not open"):
        await store.get("j1")
    await store.start()
    await store.create(job("j1"))
    await store.close()
    with pytest.raises(StoreFailure, match="not open"):
        await store.create(job("j2"))
    await store.close()  # twice is fine


async def test_close_finishes_the_writes_already_queued(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database)
    await store.start()
    writes = [asyncio.create_task(store.create(job(f"j{n}"))) for n in range(50)]
    # One turn of the loop: each task runs to its first suspension, which is after its
    # write is queued (nothing is awaited before that), so all 50 are queued at close.
    await asyncio.sleep(0)
    await store.close()
    assert all(was_created for _, was_created in await asyncio.gather(*writes))
    reopened = SqliteJobStore(database)
    await reopened.start()
    try:
        assert len(await reopened.get_many([f"j{n}" for n in range(50)])) == 50
    finally:
        await reopened.close()


JOBS_PER_PROCESS = 150
SHARED_JOBS = 40


def write_from_another_process(database: str, name: str, start: Barrier) -> None:
    """One process's share: its own jobs, created and moved on, and a transition of every
    shared job (which the other process tries too)."""
    asyncio.run(_write(Path(database), name, start))


async def _write(database: Path, name: str, start: Barrier) -> None:
    store = SqliteJobStore(database, busy_timeout_ms=30_000)
    await store.start()
    try:
        start.wait(WAIT_BOUND_S)  # both open, then both write at once
        mine = [job(f"{name}-{n}") for n in range(JOBS_PER_PROCESS)]
        results = await asyncio.gather(*(store.create(j, outbox=created(j)) for j in mine))
        assert all(was_created for _, was_created in results)
        to = JobStatus.LAUNCHING if name == "first" else JobStatus.STOPPING
        moves = [
            store.transition(j.job_id, JobChange(to_status=to, at=T0), expected_version=1)
            for j in mine
        ]
        moves += [
            store.transition(f"shared-{n}", JobChange(to_status=to, at=T0), expected_version=1)
            for n in range(SHARED_JOBS)
        ]
        for outcome in await asyncio.gather(*moves, return_exceptions=True):
            if not isinstance(outcome, JobRecord | VersionConflict):
                raise AssertionError(f"unexpected outcome {outcome!r}")
    finally:
        await store.close()


async def test_two_processes_writing_one_store_file_both_succeed(tmp_path: Path) -> None:
    """Two processes (as the API and `stoker up` do) write the same file at once: every
    job of both is there with its history and events, and of the two transitions of a
    shared job from the same version exactly one won."""
    database = tmp_path / "jobs.db"
    store = SqliteJobStore(database)
    await store.start()
    try:
        for n in range(SHARED_JOBS):
            await store.create(job(f"shared-{n}"))
        spawn = multiprocessing.get_context("spawn")
        start = spawn.Barrier(2)
        writers = [
            spawn.Process(target=write_from_another_process, args=(str(database), name, start))
            for name in ("first", "second")
        ]
        for writer in writers:
            writer.start()
        loop = asyncio.get_running_loop()
        for writer in writers:
            await loop.run_in_executor(None, writer.join, WAIT_BOUND_S * 2)
        assert [writer.exitcode for writer in writers] == [0, 0]

        for name, status in (("first", JobStatus.LAUNCHING), ("second", JobStatus.STOPPING)):
            ids = [f"{name}-{n}" for n in range(JOBS_PER_PROCESS)]
            found = await store.get_many(ids)
            assert {j.status for j in found.values()} == {status}
            assert len(found) == JOBS_PER_PROCESS
            for job_id in ids[:: JOBS_PER_PROCESS // 10]:
                assert [line.version for line in await store.history(job_id)] == [1, 2]
        shared = await store.get_many([f"shared-{n}" for n in range(SHARED_JOBS)])
        assert {j.version for j in shared.values()} == {2}
        for n in range(SHARED_JOBS):
            assert len(await store.history(f"shared-{n}")) == 2
        events = await store.pending_outbox(limit=1000)
        assert len(events) == 2 * JOBS_PER_PROCESS
    finally:
        await store.close()
