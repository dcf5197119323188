"""The handler offers the entry it just added, and a flusher read may offer the same entry
first: between the add's commit and the handler's offer, the entry is pending in the ledger
for anyone to read, and the flusher's delivery may even end before the add's answer reaches
the handler. Either way the receiver gets one message."""

from __future__ import annotations

import asyncio

from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.ports.ledger import EntryStatus, LedgerEntry
from tests.unit.notifier.support import terminal
from tests.unit.notifier.test_service import Rig


class HeldAddLedger(MemoryLedger):
    """A ledger whose add commits at once but answers only after `release` (a store's reply
    still on its way back): `committed` is set once the entry is readable."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def add(self, entry: LedgerEntry) -> bool:
        added = await super().add(entry)
        self.committed.set()
        await self.release.wait()
        return added


def rig_with(ledger: HeldAddLedger) -> Rig:
    """No digest window: a second offer of the entry would be a second message at once."""
    rig = Rig(digest_window_s=0)
    rig.ledger = ledger
    rig.notifier = rig.build()
    return rig


async def test_an_entry_a_flusher_offered_while_its_add_was_answered_is_sent_once() -> None:
    """The flusher reads the committed entry and starts its delivery while the handler waits
    for the add's answer; the handler then finds it offered and leaves it."""
    ledger = HeldAddLedger()
    rig = rig_with(ledger)
    await rig.add_job("j1")
    handling = asyncio.create_task(rig.deliver(terminal("j1")))
    await ledger.committed.wait()
    assert await rig.notifier.flush_once() == 1  # the flusher got there first
    ledger.release.set()
    await handling
    await rig.notifier.wait_idle()
    await rig.flush()  # and a later pass finds nothing left to send
    assert [m.jobs[0].job_id for m in rig.webhook.delivered] == ["j1"]
    assert [e.status for e in await rig.entries()] == [EntryStatus.SENT]


async def test_an_entry_a_flusher_sent_before_its_add_was_answered_is_not_sent_again() -> None:
    """The flusher's delivery of the entry has finished (sent and marked) before the handler
    hears back from the add: the handler does not offer it a second time."""
    ledger = HeldAddLedger()
    rig = rig_with(ledger)
    await rig.add_job("j1")
    handling = asyncio.create_task(rig.deliver(terminal("j1")))
    await ledger.committed.wait()
    await rig.flush()  # read, delivered and marked sent while the add's answer is held
    assert [e.status for e in await rig.entries()] == [EntryStatus.SENT]
    ledger.release.set()
    await handling
    await rig.notifier.wait_idle()
    assert [m.jobs[0].job_id for m in rig.webhook.delivered] == ["j1"]
    assert [e.status for e in await rig.entries()] == [EntryStatus.SENT]
