"""The ledger contract: the same checks run against every NotificationLedger adapter."""

from __future__ import annotations

from datetime import timedelta

from stoker.core.job import JobStatus
from stoker.core.notification import ConsoleTarget, JobNote
from stoker.core.spec import WebhookTarget
from stoker.ports.ledger import EntryStatus, LedgerEntry, NotificationLedger
from tests.unit.notifier.support import T0


def entry(job_id: str, *, minutes: int = 0, event_id: str = "e1") -> LedgerEntry:
    note = JobNote(
        job_id=job_id,
        owner="alice",
        state=JobStatus.FAILED,
        attempts=3,
        reason="CapacityError",
        ended_at=T0,
        duration_s=12.5,
    )
    target = WebhookTarget(secret_ref="team")
    return LedgerEntry.new(
        note=note, event_id=event_id, target=target, at=T0 + timedelta(minutes=minutes)
    )


async def insert_is_conditional(ledger: NotificationLedger) -> None:
    first = entry("job-1", event_id="e1")
    assert await ledger.add(first) is True
    # The same transition carried by another event id (a replay) is still one entry.
    assert await ledger.add(entry("job-1", event_id="e2")) is False
    stored = await ledger.get(first.entry_id)
    assert stored is not None
    assert stored.event_id == "e1"
    assert stored.status is EntryStatus.PENDING
    assert stored.note == first.note
    assert stored.target == first.target


async def pending_is_oldest_first_and_limited(ledger: NotificationLedger) -> None:
    for n, minutes in enumerate([5, 1, 3]):
        await ledger.add(entry(f"job-{n}", minutes=minutes))
    assert [e.job_id for e in await ledger.pending()] == ["job-1", "job-2", "job-0"]
    assert [e.job_id for e in await ledger.pending(limit=2)] == ["job-1", "job-2"]


async def sent_and_failed_leave_pending_for_good(ledger: NotificationLedger) -> None:
    a, b, c = entry("a"), entry("b", minutes=1), entry("c", minutes=2)
    for e in (a, b, c):
        await ledger.add(e)
    await ledger.mark_sent([a.entry_id], T0)
    await ledger.mark_failed([b.entry_id], "HTTP 404", T0)
    assert [e.job_id for e in await ledger.pending()] == ["c"]
    failed = await ledger.get(b.entry_id)
    assert failed is not None
    assert failed.status is EntryStatus.FAILED
    assert failed.failure_reason == "HTTP 404"
    # A late "failed" for an entry already sent changes nothing.
    await ledger.mark_failed([a.entry_id], "late", T0)
    sent = await ledger.get(a.entry_id)
    assert sent is not None
    assert sent.status is EntryStatus.SENT
    assert sent.failure_reason is None


async def claim_binds_once(ledger: NotificationLedger) -> None:
    a, b = entry("a"), entry("b", minutes=1)
    await ledger.add(a)
    await ledger.add(b)
    await ledger.claim([a.entry_id, b.entry_id], "digest-1", T0)
    # A second claim (another grouping after a restart) keeps the first binding.
    await ledger.claim([a.entry_id], "other", T0)
    by_id = {e.entry_id: e for e in await ledger.pending()}
    assert by_id[a.entry_id].message_id == "digest-1"
    assert by_id[b.entry_id].message_id == "digest-1"
    await ledger.mark_sent([a.entry_id, b.entry_id], T0)
    assert await ledger.pending() == []


async def unknown_ids_are_ignored(ledger: NotificationLedger) -> None:
    await ledger.mark_sent(["nope"], T0)
    await ledger.claim(["nope"], "m", T0)
    assert await ledger.get("nope") is None


async def local_targets_round_trip(ledger: NotificationLedger) -> None:
    note = entry("x").note
    console = LedgerEntry.new(note=note, event_id="e", target=ConsoleTarget(), at=T0)
    assert await ledger.add(console)
    stored = await ledger.get(console.entry_id)
    assert stored is not None
    assert stored.target == ConsoleTarget()


CONTRACT = [
    insert_is_conditional,
    pending_is_oldest_first_and_limited,
    sent_and_failed_leave_pending_for_good,
    claim_binds_once,
    unknown_ids_are_ignored,
    local_targets_round_trip,
]
