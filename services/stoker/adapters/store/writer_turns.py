"""Writers of one SQLite file take turns on a lock file beside it, in the kernel.

SQLite lets one writer in at a time. A writer that finds the file locked sleeps and tries
again (1, 2, 5, 10 ... 100 ms apart), so when the API and `stoker up` share the file the
one that lost the race waits many milliseconds after the lock was freed, and can lose it
again to the other process's next transaction. In a 10,000-job benchmark run the
submitting process waited 3.4 s in all for the write lock in its group transactions alone,
up to 734 ms at a time.

An exclusive `flock` on `<database>-writer.lock`, taken before `BEGIN IMMEDIATE` and
released after `COMMIT` or `ROLLBACK`, hands the turn over instead: a waiting writer is
woken by the kernel as soon as the lock is released, and it waits without holding the
GIL or waking to poll. The kernel frees the lock of a process that dies, so a crash
never leaves it taken. The wait has no time limit of its own: a turn lasts one
transaction, and a transaction that cannot get SQLite's lock within the busy timeout
fails and gives its turn back. Only a writer frozen inside its transaction (SIGSTOP, a
debugger) now makes the others wait until it resumes or dies, where before they failed
after the busy timeout. SQLite's own locking is unchanged underneath, so a writer that
does not take turns (the `sqlite3` shell, an older stoker) is still kept out by it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(database: Path) -> Path:
    """The lock file of `database`, beside it as SQLite's own `-wal` and `-shm` files are."""
    return database.with_name(f"{database.name}-writer.lock")


class WriterTurns:
    """One process's handle on the lock file; `turn()` is held around each write
    transaction. Not for sharing between threads: `flock` locks belong to the open file, so
    two threads on one handle would not keep each other out. The SQLite store has one handle
    for its writer thread, one for its checkpointer and one for write groups run on the
    event loop (whose wait for a turn a thread does, ADR 0017)."""

    def __init__(self, database: Path) -> None:
        self._path = lock_path(database)
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # also releases a lock still held

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait until no other writer of the file holds its turn, then hold it."""
        self.take()
        try:
            yield
        finally:
            self.give_back()

    def take(self, *, wait: bool = True) -> bool:
        """Hold the turn until `give_back`: at once if it is free, else after waiting for it
        (`wait`) or not at all (False, and the event loop may call it)."""
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(self._open_fd(), flags)
        except BlockingIOError:
            return False
        return True

    def give_back(self) -> None:
        """Leave a turn held since `take` (a closed handle gave it back already)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"writer lock {self._path} is not open")
        return self._fd
