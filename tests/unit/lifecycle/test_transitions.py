"""The Transitioner returns after the store write; one task publishes what gathered, a
topic at a time in write order, and marks it published. A failed publish leaves the
events to the outbox relay. With a gathering window, only a new job's event goes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stoker.adapters.store.memory import MemoryJobStore
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobStatus
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.lifecycle.transitions import OutboxRelay, Transitioner
from tests.support.waiting import wait_until
from tests.unit.lifecycle.conftest import spec


class GatedPublisher:
    """Records what is published; holds every call until the gate opens, or fails it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail = False
        self.calls: list[tuple[str, list[str]]] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.calls.append((topic, [e.id for e in events]))

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        raise AssertionError("not used")


async def test_moves_return_before_publishing_and_events_go_out_in_order() -> None:
    clock, store, publisher = FakeClock(), MemoryJobStore(), GatedPublisher()
    await store.start()
    transitioner = Transitioner(store, publisher)
    job, _ = await JobService(transitioner, clock).submit(parse_spec(spec()))
    for to in (JobStatus.LAUNCHING, JobStatus.LAUNCHED, JobStatus.COMPLETED):
        job = await transitioner.move(job, JobChange(to_status=to, at=clock.now(), attempt=1))
    assert publisher.calls == []  # every move returned while the broker held the first call
    assert len(await store.pending_outbox()) == 5

    publisher.gate.set()
    await transitioner.flush()
    lifecycle = [ids for topic, ids in publisher.calls if topic == topics.LIFECYCLE]
    assert [i for ids in lifecycle for i in ids] == [
        f"job-1:{v}:job-status-changed" for v in (1, 2, 3, 4)
    ]
    assert [(t, ids) for t, ids in publisher.calls if t == topics.COMPLETED] == [
        (topics.COMPLETED, ["job-1:4:job-completed"])
    ]
    assert await store.pending_outbox() == []


async def test_a_failed_publish_is_left_to_the_relay() -> None:
    clock, store, publisher = FakeClock(), MemoryJobStore(), GatedPublisher()
    await store.start()
    publisher.fail = True
    publisher.gate.set()
    transitioner = Transitioner(store, publisher)
    await JobService(transitioner, clock).submit(parse_spec(spec()))
    await transitioner.flush()
    assert [e.entry_id for e in await store.pending_outbox()] == ["job-1:1:job-status-changed"]

    publisher.fail = False
    clock.advance(60)
    relay = OutboxRelay(store, publisher, clock)
    assert await relay.run_once() == 1
    assert publisher.calls == [(topics.LIFECYCLE, ["job-1:1:job-status-changed"])]
    assert await store.pending_outbox() == []


class SignallingPublisher(GatedPublisher):
    """An open GatedPublisher that also says when a call came in."""

    def __init__(self) -> None:
        super().__init__()
        self.gate.set()
        self.called = asyncio.Event()

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await super().publish_many(topic, events)
        self.called.set()

    async def next_call(self) -> None:
        await asyncio.wait_for(self.called.wait(), 5)
        self.called.clear()


async def _let_the_loop_run() -> None:
    """Turns of the loop for a publish that must not happen to show up if it wrongly would:
    an absence has no event to wait for."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_events_of_moves_wait_for_company_and_a_new_job_takes_them_along() -> None:
    """With a gathering window, a new job's event goes at once and the events of moves wait
    (here: a window far longer than the test) until a new job's event takes them along in one
    publish per topic. The marks wait too; `flush` writes them."""
    clock, store, publisher = FakeClock(), MemoryJobStore(), SignallingPublisher()
    await store.start()
    transitioner = Transitioner(store, publisher, gather_s=3600)
    jobs = JobService(transitioner, clock)
    job, _ = await jobs.submit(parse_spec(spec("job-1")))
    await publisher.next_call()
    assert publisher.calls == [(topics.LIFECYCLE, ["job-1:1:job-status-changed"])]

    for to in (JobStatus.LAUNCHED, JobStatus.COMPLETED):
        job = await transitioner.move(job, JobChange(to_status=to, at=clock.now(), attempt=1))
    await _let_the_loop_run()
    assert len(publisher.calls) == 1  # the moves' events are waiting

    await jobs.submit(parse_spec(spec("job-2")))
    await wait_until(lambda: len(publisher.calls) == 3, what="one publish per topic")
    changed = [f"{job}:job-status-changed" for job in ("job-1:2", "job-1:3", "job-2:1")]
    assert sorted(publisher.calls[1:]) == [
        (topics.COMPLETED, ["job-1:3:job-completed"]),
        (topics.LIFECYCLE, changed),
    ]
    assert len(await store.pending_outbox()) == 5  # published; the marks wait for company too

    await transitioner.flush()
    assert await store.pending_outbox() == []
    assert len(publisher.calls) == 3


def test_a_negative_gathering_window_is_refused() -> None:
    with pytest.raises(ValueError, match="gather_s must be >= 0"):
        Transitioner(MemoryJobStore(), GatedPublisher(), gather_s=-1)
