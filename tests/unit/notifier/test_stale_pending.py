"""A pending read that overlaps a delivery must not send the delivered message again."""

from __future__ import annotations

import asyncio

from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.core.job import JobStatus
from stoker.core.notification import Notification
from stoker.ports.ledger import LedgerEntry
from tests.unit.notifier.support import RecordingChannel, terminal
from tests.unit.notifier.test_service import Rig


class SlowLedger(MemoryLedger):
    """A ledger whose pending read returns what it saw when it began, after `release`
    (a slow store: the answer is already out of date when it arrives)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        seen = await super().pending(limit)
        if self.hold:
            self.reading.set()
            await self.release.wait()
        return seen


class GatedChannel(RecordingChannel):
    """Sends once `gate` is set: the message is in flight until then."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self._gate = gate

    async def send(self, message: Notification) -> None:
        await self._gate.wait()
        await super().send(message)


async def test_entry_sent_while_a_pending_read_runs_is_not_sent_again() -> None:
    """Delivery A claims, sends and marks the entry sent while the next flush's pending read
    is under way; that read still lists the entry as pending, and the flush skips it: the
    receiver gets one message, not two with the same key."""
    rig = Rig(digest_window_s=0)
    ledger = SlowLedger()
    rig.ledger = ledger
    rig.webhook = GatedChannel(ledger.reading)  # A sends only once the read is under way
    rig.channels = {"webhook": rig.webhook}
    rig.notifier = rig.build()
    await rig.add_job("j1")
    await rig.deliver(terminal("j1", state=JobStatus.COMPLETED))

    await rig.notifier.flush_once()  # starts delivery A
    ledger.hold = True
    second = asyncio.create_task(rig.notifier.flush_once())
    await ledger.reading.wait()  # the read has its (soon stale) answer
    await rig.notifier.wait_idle()  # delivery A finishes: sent and marked
    ledger.release.set()
    assert await second == 0
    await rig.notifier.wait_idle()
    assert len(rig.webhook.delivered) == 1
