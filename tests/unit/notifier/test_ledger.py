"""The ledger contract on the in-memory fake and on SQLite; plus SQLite durability."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.adapters.notifier.ledger_sqlite import SqliteLedger
from stoker.ports.ledger import EntryStatus, NotificationLedger
from tests.unit.notifier.ledger_contract import CONTRACT, entry
from tests.unit.notifier.support import T0


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[NotificationLedger]:
    """Each adapter, started empty."""
    adapter: NotificationLedger = (
        MemoryLedger() if request.param == "memory" else SqliteLedger(tmp_path / "ledger.db")
    )
    await adapter.start()
    yield adapter
    await adapter.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__)
async def test_ledger_contract(
    ledger: NotificationLedger, check: Callable[[NotificationLedger], Awaitable[None]]
) -> None:
    """Conditional insert, oldest-first pending, one-way status changes, claims that stick."""
    await check(ledger)


async def test_sqlite_ledger_survives_reopening(tmp_path: Path) -> None:
    """What one process wrote (pending, claims, sent) is what the next process reads."""
    path = tmp_path / "ledger.db"
    first = SqliteLedger(path)
    await first.start()
    a, b = entry("a"), entry("b", minutes=1)
    await first.add(a)
    await first.add(b)
    await first.claim([b.entry_id], "msg-b", T0)
    await first.mark_sent([a.entry_id], T0)
    await first.close()

    second = SqliteLedger(path)
    await second.start()
    try:
        [left] = await second.pending()
        assert left.entry_id == b.entry_id
        assert left.message_id == "msg-b"
        assert await second.add(entry("a")) is False
        stored = await second.get(a.entry_id)
        assert stored is not None
        assert stored.status is EntryStatus.SENT
    finally:
        await second.close()
