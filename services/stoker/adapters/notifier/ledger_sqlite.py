"""The embedded ledger: one SQLite file, every write committed (and synced) before it returns.

Statements run as on every SQLite file stoker uses (`stoker.adapters.sqlite`): writes on
the file's writer thread, those queued together in one transaction; reads on its reader
thread. The event loop never waits on the disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from stoker.adapters.sqlite import SqliteDatabase, run_script
from stoker.ports.ledger import EntryStatus, LedgerEntry, LedgerFailure

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

_SCHEMA = (
    """
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
    )
    """,
    "CREATE INDEX IF NOT EXISTS notification_ledger_pending"
    " ON notification_ledger (created_at, entry_id) WHERE status = 'pending'",
)


def _migrate(conn: sqlite3.Connection) -> None:
    run_script(conn, _SCHEMA)


class SqliteLedger:
    """The `NotificationLedger` in one SQLite file.

    busy_timeout_ms: how long a call waits for the file's lock held by another process.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self._db = SqliteDatabase(
            path,
            label="notification ledger",
            migrate=_migrate,
            failure=LedgerFailure,
            # FULL: a pending entry must survive power loss too, not only a killed process.
            synchronous="FULL",
            busy_timeout_ms=busy_timeout_ms,
        )

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    async def add(self, entry: LedgerEntry) -> bool:
        row = entry.to_row()
        row.update(status=EntryStatus.PENDING.value, message_id=None)
        values = tuple(row[c] for c in _COLUMNS)
        sql = (
            f"INSERT INTO notification_ledger ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT(entry_id) DO NOTHING"
        )
        return await self._db.write("add", lambda c: c.execute(sql, values).rowcount == 1)

    async def get(self, entry_id: str) -> LedgerEntry | None:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM notification_ledger WHERE entry_id = ?"
        row = await self._db.read("get", lambda c: c.execute(sql, (entry_id,)).fetchone())
        return None if row is None else LedgerEntry.from_row(dict(zip(_COLUMNS, row, strict=True)))

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM notification_ledger WHERE status = 'pending' "
            "ORDER BY created_at, entry_id LIMIT ?"
        )
        rows = await self._db.read("pending", lambda c: c.execute(sql, (limit,)).fetchall())
        return [LedgerEntry.from_row(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    async def claim(self, entry_ids: Sequence[str], message_id: str, at: datetime) -> None:
        sql = (
            "UPDATE notification_ledger SET message_id = ?, updated_at = ? "
            "WHERE entry_id = ? AND status = 'pending' AND message_id IS NULL"
        )
        params = [(message_id, at.isoformat(), entry_id) for entry_id in entry_ids]
        await self._db.write("claim", lambda c: _many(c, sql, params))

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
        await self._db.write(what, lambda c: _many(c, sql, params))


def _many(conn: sqlite3.Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    # Inside the writer's transaction, so a digest's entries change together or not at all.
    conn.executemany(sql, params)
