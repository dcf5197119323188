"""Checkpoints of a SQLite file's write-ahead log, off the commit path.

A checkpoint copies the write-ahead log (WAL) back into the database file. By default
SQLite runs one inside the commit that takes the log past 1,000 pages, and that copy ends
with fsyncs while the committing writer still holds the file's write lock: every writer of
the file, in every process, then waits for a disk sync it did not ask for.

So the write connections stoker opens never checkpoint (`wal_autocheckpoint = 0`). A
thread of the file's own does it instead, after writes and at most once per interval, with
a PASSIVE checkpoint: it copies what it can without waiting for anyone or making anyone
wait.

One catch: SQLite starts the log over only after a checkpoint has copied all of it, and
while writes never stop a PASSIVE pass does not reach the end (it reports the frames as
they were when it began, so its report cannot tell). So once a pass finds the log at
`FULL_FROM_FRAMES` or more, the checkpointer runs a FULL one, which holds new writers off
(they wait with their busy timeout) while it copies the rest. That pass is short, because
the one before it already copied the bulk.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

FULL_FROM_FRAMES = 8192
"""A log this long (32 MiB of 4 KiB pages) is copied to its end with writers held off, so
that it can start over instead of growing while writes go on."""


@dataclass(frozen=True)
class WalCheckpoint:
    """What one checkpoint did, as `PRAGMA wal_checkpoint` reports it."""

    busy: bool
    """Another connection was checkpointing, or (FULL) writers did not finish within the
    busy timeout; this one did not copy everything."""
    log_frames: int
    copied_frames: int

    @property
    def complete(self) -> bool:
        return not self.busy and self.copied_frames >= self.log_frames


def needs_full(done: WalCheckpoint, *, full_from_frames: int) -> bool:
    """Whether to finish the copy with writers held off after the pass `done`. Not when
    another connection is checkpointing: it is doing the work."""
    return not done.busy and done.log_frames >= full_from_frames


def checkpoint(
    conn: sqlite3.Connection, *, full_from_frames: int = FULL_FROM_FRAMES
) -> WalCheckpoint:
    """One checkpoint on `conn`, a connection of the checkpointer's own (not a writer's, so
    that the FULL pass waits for the writers rather than for itself)."""
    done = _run(conn, "PASSIVE")
    if needs_full(done, full_from_frames=full_from_frames):
        done = _run(conn, "FULL")
    return done


def _run(conn: sqlite3.Connection, mode: str) -> WalCheckpoint:
    busy, log_frames, copied_frames = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return WalCheckpoint(bool(busy), int(log_frames), int(copied_frames))
