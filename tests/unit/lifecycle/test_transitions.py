"""The Transitioner returns after the store write; one task publishes what gathered, a
topic at a time in write order, and marks it published. A failed publish leaves the
events to the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stoker import topics
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import FakeClock
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobStatus
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.lifecycle.transitions import OutboxRelay, Transitioner
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
