"""The notifier's rules, end to end over fakes behind the ports (no network, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.events import (
    CloudEvent,
    JobCompleted,
    JobFailed,
    JobStatusChanged,
    JobStopped,
    NotificationSent,
    decode_event,
)
from stoker.core.job import JobStatus
from stoker.core.notification import ConsoleTarget, JobNote
from stoker.notifier.config import NotifySettings
from stoker.notifier.service import Notifier
from stoker.notifier.targets import resolve, spec_targets
from stoker.ports.bus import BusRecord
from stoker.ports.channel import Channel, DeliveryDeferred, DeliveryRejected
from stoker.ports.ledger import EntryStatus, LedgerEntry
from tests.unit.notifier.support import T0, RecordingChannel, job, terminal

SECRET_URL = "https://hooks.example.com/T0SECRET/B0SECRET/zzzzSECRETTOKENabcd"
OWNERS = ["alice", "ana", *(f"owner{n}" for n in range(10))]
HOOKS = {f"{owner}-hook": f"https://example.com/{owner}" for owner in OWNERS}
"""The default team's secrets: one webhook per owner, named `<owner>-hook`."""


class Rig:
    """A notifier wired to fakes, with a clock that the injected sleep moves. Jobs notify
    their owner's webhook by `secret_ref`; the default team has one per owner."""

    def __init__(self, *, channels: dict[str, Channel] | None = None, **settings: Any) -> None:
        self.clock = FakeClock(T0)
        self.sleeps: list[float] = []
        self.bus = MemoryBus()
        self.store = MemoryJobStore()
        self.ledger = MemoryLedger()
        self.webhook = RecordingChannel()
        self.console = RecordingChannel()
        self.channels: dict[str, Channel] = channels or {
            "webhook": self.webhook,
            "console": self.console,
        }
        self.settings = NotifySettings(
            **{"digest_window_s": 60, "secrets": {"default": HOOKS}, **settings}
        )
        self.notifier = self.build()

    def build(self) -> Notifier:
        return Notifier(
            ledger=self.ledger,
            store=self.store,
            publisher=self.bus,
            channels=self.channels,
            settings=self.settings,
            clock=self.clock,
            sleep=self.sleep,
        )

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    async def add_job(self, job_id: str, owner: str = "alice") -> None:
        notify = [{"kind": "webhook", "secret_ref": f"{owner}-hook"}]
        await self.store.create(job(job_id, owner, notify))

    async def deliver(self, event: tuple[str, CloudEvent]) -> None:
        topic, cloud = event
        record = BusRecord(topic, 0, 0, cloud.subject, cloud.to_json())
        await self.notifier.handle(decode_event(record.value), record)

    async def owed(self, event: tuple[str, CloudEvent]) -> None:
        """The ledger as a notifier that died right after handling `event` leaves it: an
        entry pending per target, nothing sent."""
        _, cloud = event
        data = cloud.data
        assert isinstance(data, JobCompleted | JobFailed | JobStopped)
        note = JobNote.from_event(data)
        job = await self.store.get(note.job_id)
        for target in resolve(spec_targets(job.spec), note.owner, self.settings, "n.jsonl"):
            entry = LedgerEntry.new(note=note, event_id=cloud.id, target=target, at=T0)
            await self.ledger.add(entry)

    async def flush(self) -> None:
        await self.notifier.flush_once()
        await self.notifier.wait_idle()

    async def sent_events(self) -> list[NotificationSent]:
        source = self.bus.source("check", [topics.NOTIFICATIONS])
        records = await source.fetch(1000, 0.05)
        await source.close()
        out = []
        for record in records:
            data = decode_event(record.value).data
            assert isinstance(data, NotificationSent)
            out.append(data)
        return out

    async def entries(self) -> Sequence[LedgerEntry]:
        return self.ledger.entries()


async def test_a_redelivered_terminal_event_notifies_once() -> None:
    """The same event handled three times (consumer retries, replays) is one message."""
    rig = Rig()
    await rig.add_job("j1")
    event = terminal("j1")
    for _ in range(3):
        await rig.deliver(event)
    await rig.flush()
    await rig.flush()
    assert len(rig.webhook.delivered) == 1
    assert [e.status for e in await rig.entries()] == [EntryStatus.SENT]


async def test_a_second_event_for_the_same_transition_is_not_a_second_message() -> None:
    """Another event id for the same job and terminal status finds the ledger entry."""
    rig = Rig()
    await rig.add_job("j1")
    await rig.deliver(terminal("j1", event_id="first"))
    await rig.deliver(terminal("j1", event_id="second"))
    await rig.flush()
    assert len(rig.webhook.delivered) == 1


async def test_non_terminal_events_are_ignored() -> None:
    """Intermediate events (launches, retries) never produce a notification."""
    rig = Rig()
    launched = JobStatusChanged(
        job_id="j1",
        owner="ana",
        version=2,
        from_status=JobStatus.NEW,
        to_status=JobStatus.LAUNCHED,
        attempt=1,
    )
    await rig.deliver((topics.LIFECYCLE, CloudEvent.wrap(launched, time=T0)))
    await rig.flush()
    assert await rig.entries() == []


@pytest.mark.parametrize("state", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED])
async def test_each_terminal_state_is_notified_with_its_facts(state: JobStatus) -> None:
    """Completed, Failed and Stopped each give a message with state, attempts, duration."""
    rig = Rig()
    await rig.add_job("j1")
    await rig.deliver(terminal("j1", state=state, attempts=3))
    await rig.flush()
    [message] = rig.webhook.delivered
    [note] = message.jobs
    assert (note.state, note.attempts, note.duration_s) == (state, 3, 185.0)
    assert (note.reason is None) == (state is JobStatus.COMPLETED)
    assert message.idempotency_key == (await rig.entries())[0].entry_id


async def test_targets_join_spec_owner_and_global_defaults_without_repeats() -> None:
    """The spec's webhook, the owner's and the global one each get exactly one message;
    operator targets may carry raw URLs, and a ref resolves in the job's team."""
    rig = Rig(
        owner_targets={"alice": [{"kind": "webhook", "url": "https://example.com/team"}]},
        default_targets=[
            {"kind": "webhook", "url": "https://example.com/all"},
            {"kind": "webhook", "secret_ref": "alice-hook"},  # same as the spec's
        ],
    )
    await rig.add_job("j1")
    await rig.deliver(terminal("j1"))
    await rig.flush()
    urls = sorted(
        m.endpoint.url if m.endpoint else str(m.target.url)  # type: ignore[union-attr]
        for m in rig.webhook.delivered
    )
    assert urls == [
        "https://example.com/alice",
        "https://example.com/all",
        "https://example.com/team",
    ]


async def test_a_job_without_targets_falls_back_to_the_console() -> None:
    """The embedded default: nothing configured still tells someone."""
    rig = Rig()
    await rig.store.create(job("j1"))
    await rig.deliver(terminal("j1"))
    await rig.flush()
    assert [m.target for m in rig.console.delivered] == [ConsoleTarget()]


async def test_a_job_missing_from_the_store_still_reaches_default_targets() -> None:
    """An event for an unknown job is not dropped: the defaults are notified."""
    rig = Rig(default_targets=[{"kind": "webhook", "url": "https://example.com/all"}])
    await rig.deliver(terminal("ghost"))
    await rig.flush()
    assert len(rig.webhook.delivered) == 1


async def test_a_storm_of_one_owner_collapses_into_one_digest() -> None:
    """Ten jobs in a minute: the first alone, the other nine in one digest at window close."""
    rig = Rig()
    for n in range(10):
        await rig.add_job(f"j{n}")
    for n in range(10):
        await rig.deliver(
            terminal(f"j{n}", state=JobStatus.FAILED if n % 3 else JobStatus.COMPLETED)
        )
        await rig.flush()
        rig.clock.advance(2)
    assert len(rig.webhook.delivered) == 1
    rig.clock.advance(60)
    await rig.flush()
    first, digest = rig.webhook.delivered
    assert [n.job_id for n in first.jobs] == ["j0"]
    assert [n.job_id for n in digest.jobs] == [f"j{n}" for n in range(1, 10)]
    assert digest.counts() == {"Completed": 3, "Failed": 6}
    assert digest.idempotency_key.startswith("digest-")
    assert {e.status for e in await rig.entries()} == {EntryStatus.SENT}
    events = await rig.sent_events()
    assert sorted(e.digest_size for e in events) == [1] + [9] * 9
    assert len({e.job_id for e in events}) == 10


async def test_a_storm_larger_than_a_ledger_page_goes_in_one_digest() -> None:
    """1,200 jobs end together: the first alone, the other 1,199 in the one digest at window
    close. The flusher reads pending entries a page at a time (oldest first); entries are
    offered as they are recorded, so held ones never keep newer ones out of the window."""
    rig = Rig()
    count = 1200
    for n in range(count):
        await rig.add_job(f"j{n:04d}")
        await rig.deliver(terminal(f"j{n:04d}"))
    await rig.flush()
    rig.clock.advance(60)
    await rig.flush()
    first, digest = rig.webhook.delivered
    assert [n.job_id for n in first.jobs] == ["j0000"]
    assert len(digest.jobs) == count - 1
    assert {e.status for e in await rig.entries()} == {EntryStatus.SENT}


async def test_an_event_handled_after_the_flusher_stopped_is_left_for_the_next_process() -> None:
    """Shutting down: the consumer may still hand over its last batch after the flusher
    settled its sends. That entry is recorded, not sent from a task nobody waits for; the
    next notifier sends it."""
    rig = Rig()
    await rig.add_job("j1")
    stop = asyncio.Event()
    stop.set()
    await rig.notifier.run_flusher(stop)
    await rig.deliver(terminal("j1"))
    await rig.notifier.wait_idle()
    assert rig.webhook.delivered == []
    assert [e.status for e in await rig.entries()] == [EntryStatus.PENDING]
    fresh = rig.build()
    await fresh.flush_once()
    await fresh.wait_idle()
    assert [m.jobs[0].job_id for m in rig.webhook.delivered] == ["j1"]


async def test_429_is_retried_after_the_wait_the_receiver_asked_for() -> None:
    """Retry-After: 7 gives a 7 s wait, then the one delivery succeeds."""
    channel = RecordingChannel([DeliveryDeferred("HTTP 429", status=429, retry_after_s=7.0)])
    rig = Rig(channels={"webhook": channel})
    await rig.add_job("j1")
    await rig.deliver(terminal("j1"))
    await rig.flush()
    assert rig.sleeps == [7.0]
    assert len(channel.attempts) == 2
    assert len(channel.delivered) == 1


async def test_5xx_without_retry_after_backs_off_exponentially() -> None:
    """Two 503s: waits of 1 s then 2 s (jitter off), then success."""
    errors = [DeliveryDeferred("HTTP 503", status=503) for _ in range(2)]
    channel = RecordingChannel(errors)
    rig = Rig(channels={"webhook": channel}, initial_backoff_s=1.0, jitter=0)
    await rig.add_job("j1")
    await rig.deliver(terminal("j1"))
    await rig.flush()
    assert rig.sleeps == [1.0, 2.0]
    assert len(channel.delivered) == 1


async def test_a_rejected_message_is_marked_failed_and_logged_not_retried() -> None:
    """A 404 is terminal: one attempt, the entry is failed with the reason, an error is logged."""
    channel = RecordingChannel([DeliveryRejected("webhook example.com: HTTP 404", status=404)])
    rig = Rig(channels={"webhook": channel})
    await rig.add_job("j1")
    await rig.deliver(terminal("j1"))
    with capture_logs() as logs:
        await rig.flush()
        await rig.flush()
    assert len(channel.attempts) == 1
    [entry] = await rig.entries()
    assert entry.status is EntryStatus.FAILED
    assert entry.failure_reason is not None
    assert "HTTP 404" in entry.failure_reason
    assert any(r["event"] == "notification rejected" and r["log_level"] == "error" for r in logs)


async def test_retries_stop_at_the_cap_and_the_entry_is_failed() -> None:
    """A receiver down for good: max_attempts tries, then failed, never silently dropped."""
    channel = RecordingChannel([DeliveryDeferred("HTTP 503", status=503) for _ in range(10)])
    rig = Rig(channels={"webhook": channel}, max_attempts=3)
    await rig.add_job("j1")
    await rig.deliver(terminal("j1"))
    await rig.flush()
    assert len(channel.attempts) == 3
    [entry] = await rig.entries()
    assert entry.status is EntryStatus.FAILED
    assert entry.failure_reason is not None
    assert "gave up after 3 attempts" in entry.failure_reason


async def test_a_target_kind_without_a_channel_is_failed_with_the_reason() -> None:
    """Email with no SNS topic configured: the entry says so instead of vanishing."""
    rig = Rig()
    await rig.store.create(job("j1", notify=[{"kind": "email", "address": "a@example.com"}]))
    await rig.deliver(terminal("j1"))
    await rig.flush()
    [entry] = await rig.entries()
    assert entry.status is EntryStatus.FAILED
    assert entry.failure_reason == "email a…@example.com: no email channel is configured"


async def test_a_restart_resends_a_claimed_message_with_the_same_key() -> None:
    """Claimed but not marked sent (a crash mid-send): the next notifier reuses the key."""
    rig = Rig()
    await rig.add_job("j1")
    await rig.owed(terminal("j1"))
    [entry] = await rig.entries()
    await rig.ledger.claim([entry.entry_id], "msg-before-crash", T0)
    restarted = rig.build()
    await restarted.flush_once()
    await restarted.wait_idle()
    [message] = rig.webhook.delivered
    assert message.idempotency_key == "msg-before-crash"


async def test_pending_entries_left_by_a_crash_are_sent_by_the_next_process() -> None:
    """Entries written before a crash (never sent) go out from a fresh notifier."""
    rig = Rig()
    for n in range(3):
        await rig.add_job(f"j{n}", owner=f"owner{n}")
        await rig.owed(terminal(f"j{n}", owner=f"owner{n}"))
    fresh = rig.build()
    await fresh.flush_once()
    await fresh.wait_idle()
    assert sorted(m.jobs[0].job_id for m in rig.webhook.delivered) == ["j0", "j1", "j2"]


async def test_secrets_never_reach_logs_or_events() -> None:
    """A webhook URL quoted by a failing library and a signing secret stay out of both."""
    channel = RecordingChannel(
        [DeliveryDeferred(f"POST {SECRET_URL} failed", status=503, retry_after_s=0.0)]
    )
    hook = {"url": SECRET_URL, "signing_secret": "sign-me-secret"}
    rig = Rig(channels={"webhook": channel}, secrets={"default": {"team": hook}})
    await rig.store.create(job("j1", notify=[{"kind": "webhook", "secret_ref": "team"}]))
    with capture_logs() as logs:
        await rig.deliver(terminal("j1"))
        await rig.flush()
    assert len(channel.delivered) == 1
    events = await rig.sent_events()
    text = orjson.dumps([*logs, *[e.model_dump(mode="json") for e in events]]).decode()
    for secret in ("T0SECRET", "B0SECRET", "zzzzSECRETTOKEN", "sign-me-secret", SECRET_URL):
        assert secret not in text
    assert events[0].target == "webhook ref team"
    assert channel.delivered[0].endpoint is not None
    assert channel.delivered[0].endpoint.signing_secret == "sign-me-secret"
    assert any(r["event"] == "notification deferred; retrying" for r in logs)


class FlakyLedger(MemoryLedger):
    """A ledger whose `pending` is unreachable a given number of times."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        if self.outages:
            self.outages -= 1
            raise InfrastructureUnavailable("ledger pending: endpoint unreachable")
        return await super().pending(limit)


async def test_the_flusher_rides_out_a_ledger_outage() -> None:
    """A retriable ledger error is logged and retried on the next pass, not fatal."""
    rig = Rig(scan_interval_s=0.01)
    rig.ledger = FlakyLedger(outages=2)
    rig.notifier = rig.build()
    await rig.add_job("j1")
    await rig.owed(terminal("j1"))  # left by an earlier process: the flusher must read it
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(rig.notifier.run_flusher(stop))
        for _ in range(500):
            if rig.webhook.delivered:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(rig.webhook.delivered) == 1
    assert [r["event"] for r in logs].count("ledger unavailable; flusher will retry") == 2
