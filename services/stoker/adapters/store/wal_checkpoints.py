"""Checkpoints of the SQLite store's write-ahead log, off the commit path (ADR 0015).

A checkpoint copies the write-ahead log (WAL) back into the database file. By default
SQLite runs one inside the commit that takes the log past 1,000 pages. With
`synchronous = NORMAL` that copy ends with fsyncs, and the committing writer holds the
file's writer turn (ADR 0009) throughout, so every writer of the file waits for it. In
`bench/lifecycle.py` (a) at 1,000 jobs/s the median commit took 0.07 ms and the ones
that checkpointed up to 460 ms.

So the store's write connection never checkpoints (`wal_autocheckpoint = 0`). A thread
of the store does it instead, after writes and at most once per interval, with a PASSIVE
checkpoint outside the writer turn: it copies what it can without waiting for anyone or
making anyone wait.

One catch: SQLite starts the log over only after a checkpoint has copied all of it, and
while writes never stop a PASSIVE pass does not reach the end (it reports the frames as
they were when it began, so its report cannot tell). So once a pass finds the log at
`TAIL_UNDER_TURN_FRAMES` or more, the checkpointer takes a writer turn and copies the
rest. That turn is short, because the pass before it already copied the bulk.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from stoker.adapters.store.writer_turns import WriterTurns

TAIL_UNDER_TURN_FRAMES = 8192
"""A log this long (32 MiB of 4 KiB pages) is copied to its end within a writer turn,
so that it can start over instead of growing while writes go on."""


@dataclass(frozen=True)
class WalCheckpoint:
    """What one checkpoint did, as `PRAGMA wal_checkpoint` reports it."""

    busy: bool
    """Another connection was checkpointing; this one copied nothing."""
    log_frames: int
    copied_frames: int

    @property
    def complete(self) -> bool:
        return not self.busy and self.copied_frames >= self.log_frames


def needs_turn(done: WalCheckpoint, *, tail_under_turn_frames: int) -> bool:
    """Whether to finish the copy within a writer turn after the pass `done`. Not when
    another connection is checkpointing: it is doing the work."""
    return not done.busy and done.log_frames >= tail_under_turn_frames


def checkpoint(
    conn: sqlite3.Connection,
    turns: WriterTurns,
    *,
    tail_under_turn_frames: int = TAIL_UNDER_TURN_FRAMES,
) -> WalCheckpoint:
    """One checkpoint, on the checkpointer's own thread and connection. `turns` is a handle
    of its own on the lock file: one shared with the writer thread would not keep that
    thread out, since `flock` locks belong to the open file."""
    done = _passive(conn)
    if needs_turn(done, tail_under_turn_frames=tail_under_turn_frames):
        with turns.turn():
            done = _passive(conn)
    return done


def _passive(conn: sqlite3.Connection) -> WalCheckpoint:
    busy, log_frames, copied_frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return WalCheckpoint(bool(busy), int(log_frames), int(copied_frames))
