"""The in-memory ledger: the fake behind the port, for tests and throwaway runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from stoker.ports.ledger import EntryStatus, LedgerEntry


class MemoryLedger:
    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add(self, entry: LedgerEntry) -> bool:
        if entry.entry_id in self._entries:
            return False
        self._entries[entry.entry_id] = replace(entry, status=EntryStatus.PENDING, message_id=None)
        return True

    def entries(self) -> list[LedgerEntry]:
        """Every entry, for tests to inspect."""
        return list(self._entries.values())

    async def get(self, entry_id: str) -> LedgerEntry | None:
        return self._entries.get(entry_id)

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        found = [e for e in self._entries.values() if e.status is EntryStatus.PENDING]
        found.sort(key=lambda e: (e.created_at, e.entry_id))
        return found[:limit]

    async def claim(self, entry_ids: Sequence[str], message_id: str, at: datetime) -> None:
        for entry_id in entry_ids:
            entry = self._entries.get(entry_id)
            if entry and entry.status is EntryStatus.PENDING and entry.message_id is None:
                self._entries[entry_id] = replace(entry, message_id=message_id, updated_at=at)

    async def mark_sent(self, entry_ids: Sequence[str], at: datetime) -> None:
        self._move(entry_ids, EntryStatus.SENT, at, None)

    async def mark_failed(self, entry_ids: Sequence[str], reason: str, at: datetime) -> None:
        self._move(entry_ids, EntryStatus.FAILED, at, reason)

    def _move(
        self, entry_ids: Sequence[str], status: EntryStatus, at: datetime, reason: str | None
    ) -> None:
        for entry_id in entry_ids:
            entry = self._entries.get(entry_id)
            if entry and entry.status is EntryStatus.PENDING:
                self._entries[entry_id] = entry.with_status(status, at, reason)
