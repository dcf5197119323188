"""The embedded ledger: one SQLite file, WAL mode, every write committed before it returns.

Calls run in a worker thread behind one lock, so the event loop never blocks on disk
and the single connection is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from stoker.core.errors import InfrastructureUnavailable
from stoker.ports.ledger import EntryStatus, LedgerEntry, LedgerFailure

T = TypeVar("T")

_COLUMNS = (
    "entry_id",
    "job_id",
    "owner",
    "terminal_status",
    "event_id",
    "target",
    "note",
    "created_at",
    "status",
    "message_id",
    "updated_at",
    "failure_reason",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification_ledger (
    entry_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    terminal_status TEXT NOT NULL,
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    message_id TEXT,
    updated_at TEXT NOT NULL,
    failure_reason TEXT
);
CREATE INDEX IF NOT EXISTS notification_ledger_pending
    ON notification_ledger (created_at, entry_id) WHERE status = 'pending';
"""


class SqliteLedger:
    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=10
                )
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a pending entry must survive power loss too, not only a killed process.
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise _translate(exc, f"open {self._path}") from exc
            self._conn = conn

    async def close(self) -> None:
        def _close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(_close)

    async def _run(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        def _call() -> T:
            with self._lock:
                if self._conn is None:
                    raise LedgerFailure(f"ledger {self._path} is not started")
                try:
                    return work(self._conn)
                except sqlite3.Error as exc:
                    raise _translate(exc, what) from exc

        return await asyncio.to_thread(_call)

    async def add(self, entry: LedgerEntry) -> bool:
        row = entry.to_row()
        row.update(status=EntryStatus.PENDING.value, message_id=None)
        values = tuple(row[c] for c in _COLUMNS)
        sql = (
            f"INSERT INTO notification_ledger ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT(entry_id) DO NOTHING"
        )
        return await self._run("add", lambda c: c.execute(sql, values).rowcount == 1)

    async def get(self, entry_id: str) -> LedgerEntry | None:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM notification_ledger WHERE entry_id = ?"
        row = await self._run("get", lambda c: c.execute(sql, (entry_id,)).fetchone())
        return None if row is None else LedgerEntry.from_row(dict(zip(_COLUMNS, row, strict=True)))

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM notification_ledger WHERE status = 'pending' "
            "ORDER BY created_at, entry_id LIMIT ?"
        )
        rows = await self._run("pending", lambda c: c.execute(sql, (limit,)).fetchall())
        return [LedgerEntry.from_row(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    async def claim(self, entry_ids: Sequence[str], message_id: str, at: datetime) -> None:
        sql = (
            "UPDATE notification_ledger SET message_id = ?, updated_at = ? "
            "WHERE entry_id = ? AND status = 'pending' AND message_id IS NULL"
        )
        params = [(message_id, at.isoformat(), entry_id) for entry_id in entry_ids]
        await self._run("claim", lambda c: _many(c, sql, params))

    async def mark_sent(self, entry_ids: Sequence[str], at: datetime) -> None:
        await self._move("mark_sent", entry_ids, EntryStatus.SENT, at, None)

    async def mark_failed(self, entry_ids: Sequence[str], reason: str, at: datetime) -> None:
        await self._move("mark_failed", entry_ids, EntryStatus.FAILED, at, reason)

    async def _move(
        self,
        what: str,
        entry_ids: Sequence[str],
        status: EntryStatus,
        at: datetime,
        reason: str | None,
    ) -> None:
        sql = (
            "UPDATE notification_ledger SET status = ?, updated_at = ?, failure_reason = ? "
            "WHERE entry_id = ? AND status = 'pending'"
        )
        params = [(status.value, at.isoformat(), reason, entry_id) for entry_id in entry_ids]
        await self._run(what, lambda c: _many(c, sql, params))


def _many(conn: sqlite3.Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    # One transaction, so a digest's entries change together or not at all.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower():
        return InfrastructureUnavailable(f"notification ledger {what}: {exc}")
    if isinstance(exc, OSError):
        return InfrastructureUnavailable(f"notification ledger {what}: {exc}")
    return LedgerFailure(f"notification ledger {what}: {type(exc).__name__}: {exc}")
