"""The notifier over the embedded SQLite bus, store and ledger, delivering over real HTTP
to a receiver on 127.0.0.1 (the development allowance of the outgoing-request policy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.app.notifier import serve
from stoker.core import topics
from stoker.core.events import CloudEvent, NotificationSent
from stoker.core.job import JobStatus
from stoker.notifier.config import NotifySettings
from stoker.settings import Settings
from tests.support.events import TopicReader
from tests.support.waiting import wait_until
from tests.unit.notifier.support import Receiver, job, terminal

pytestmark = pytest.mark.integration

SECRET = "whsec-integration-secret"


@dataclass
class Stack:
    bus: SqliteLogBus
    store: SqliteJobStore
    settings: Settings
    tmp: Path

    async def submit(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        for topic, event in events:
            await self.bus.publish(topic, event)

    async def notifications(self, expected: int) -> list[NotificationSent]:
        """The NotificationSent events, once `expected` of them are there (10 s at most)."""
        async with TopicReader(self.bus, topics.NOTIFICATIONS) as reader:
            await reader.read_until(lambda: len(reader.records) >= expected, 10)
        sent = reader.events_of(NotificationSent)
        assert len(sent) == len(reader.records), "the notifications topic carries only these"
        return sent


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A fresh SQLite bus and job store in a temporary folder."""
    bus = SqliteLogBus(tmp_path / "bus.sqlite3", lease_ttl_s=2.0)
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await bus.start()
    await store.start()
    yield Stack(bus, store, Settings(data_dir=tmp_path), tmp_path)
    await bus.close()
    await store.close()


async def run_until(
    stack: Stack, notify: NotifySettings, done: Callable[[], bool], timeout_s: float = 20.0
) -> None:
    """Run the notifier until `done()` holds, then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(stack.settings, stop, notify=notify, bus=stack.bus, store=stack.store)
    )
    try:
        await wait_until(done, timeout_s, interval_s=0.02, while_running=[task])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def notify_settings(tmp: Path, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "digest_window_s": 0,
        "allow_loopback": True,
        "ledger": "sqlite",
        "ledger_path": tmp / "ledger.sqlite3",
        "initial_backoff_s": 0.05,
        "scan_interval_s": 0.5,
    }
    return NotifySettings(**{**values, **overrides})


async def test_n_terminal_events_give_exactly_n_signed_deliveries(stack: Stack) -> None:
    """24 jobs of 24 owners end: the receiver gets 24 signed deliveries, one per key, and a
    NotificationSent per job goes out."""
    async with Receiver(secret=SECRET) as receiver:
        hook = [{"kind": "webhook", "secret_ref": "team"}]
        secrets = {"default": {"team": {"url": receiver.url(), "signing_secret": SECRET}}}
        states = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED]
        events = []
        for n in range(24):
            await stack.store.create(job(f"job-{n}", f"owner-{n}", hook))
            events.append(terminal(f"job-{n}", f"owner-{n}", states[n % 3]))
        # Redelivered and replayed events must not add anything.
        await stack.submit(events + events[:5])
        notify = notify_settings(stack.tmp, secrets=secrets)
        await run_until(stack, notify, lambda: len(receiver.accepted) >= 24)
        assert len(receiver.requests) == 24
        assert set(receiver.per_key().values()) == {1}
        jobs = sorted(d.json()["jobs"][0]["job_id"] for d in receiver.accepted)
        assert jobs == sorted(f"job-{n}" for n in range(24))
        assert all(d.json()["idempotency_key"] == d.key for d in receiver.accepted)
        sent = await stack.notifications(24)
        assert sorted(e.job_id for e in sent) == jobs
        assert all(SECRET not in e.target and receiver.url() not in e.target for e in sent)


async def test_a_429_with_retry_after_then_200_is_one_accepted_delivery(stack: Stack) -> None:
    """The receiver says 429 Retry-After: 1; the notifier waits that long and sends once more."""
    async with Receiver(script=[(429, {"Retry-After": "1"})]) as receiver:
        await stack.store.create(job("j1", notify=[{"kind": "webhook", "url": receiver.url()}]))
        await stack.submit([terminal("j1")])
        await run_until(stack, notify_settings(stack.tmp), lambda: len(receiver.accepted) >= 1)
        assert len(receiver.requests) == 2
        assert len(receiver.accepted) == 1
        assert receiver.requests[0].key == receiver.requests[1].key
        first, second = receiver.request_times[:2]
        assert second - first >= 0.95


async def test_a_storm_becomes_one_message_and_one_digest(stack: Stack) -> None:
    """Six jobs of one owner within the window: the first alone, five in one digest."""
    async with Receiver() as receiver:
        hook = [{"kind": "webhook", "url": receiver.url()}]
        for n in range(6):
            await stack.store.create(job(f"s{n}", "storm", hook))
        await stack.submit([terminal(f"s{n}", "storm") for n in range(6)])
        notify = notify_settings(stack.tmp, digest_window_s=1.5)
        await run_until(stack, notify, lambda: len(receiver.accepted) >= 2)
        single, digest = receiver.accepted
        assert len(single.json()["jobs"]) == 1
        assert digest.json()["digest"] is True
        assert len(digest.json()["jobs"]) == 5
        assert digest.json()["counts"] == {"Completed": 5}


async def test_slack_incoming_webhook_from_a_team_secret_gets_block_kit(stack: Stack) -> None:
    """A slack target naming its team's secret: the Block Kit message goes to the (local)
    hook URL the secret holds, and the event names the ref, not the URL."""
    async with Receiver() as receiver:
        url = receiver.url("/services/T0LOCAL/B0LOCAL/abcdefghijklmnopqrstuvwx")
        await stack.store.create(job("sl1", notify=[{"kind": "slack", "secret_ref": "ml"}]))
        await stack.submit([terminal("sl1", state=JobStatus.FAILED, attempts=3)])
        notify = notify_settings(stack.tmp, secrets={"default": {"ml": url}})
        await run_until(stack, notify, lambda: len(receiver.accepted) >= 1)
        [delivery] = receiver.accepted
        body = delivery.json()
        assert body["text"] == "stoker: job sl1 Failed"
        text = str(body["blocks"])
        for fact in ("sl1", "alice", "Failed", "Attempts", "3", "3m05s", "CapacityError"):
            assert fact in text
        [sent] = await stack.notifications(1)
        assert sent.channel == "slack"
        assert sent.target == "slack webhook ref ml"
