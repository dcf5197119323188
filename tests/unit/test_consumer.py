"""The shared consumer rules, on the in-process bus with an injected clock and sleep."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import orjson
import pytest

from stoker.adapters.bus import MemoryBus, partition_for
from stoker.bus.consumer import BACKGROUND, Consumer, ConsumerConfig
from stoker.core.clock import FakeClock
from stoker.core.errors import EventRejected, InfrastructureUnavailable
from stoker.core.events import (
    CloudEvent,
    DeadLetter,
    JobRetryScheduled,
    JobStatusChanged,
    decode_event,
)
from stoker.core.job import JobStatus
from stoker.ports.bus import BusRecord
from tests.support.buses import SourceRecordingBus

TOPIC = "jobs"
DLQ = "dead"


class SleepRecorder:
    """A sleep that returns at once and remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class DeadLettersDown(MemoryBus):
    """A memory bus whose dead-letter topic cannot be written (a broker outage) until
    `recover()`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def recover(self) -> None:
        self.down = False

    async def publish(self, topic: str, event: CloudEvent) -> None:
        if topic == DLQ and self.down:
            raise InfrastructureUnavailable("dead-letter topic unreachable")
        await super().publish(topic, event)


def event(key: str, seq: int) -> CloudEvent:
    data = JobStatusChanged(
        job_id=key,
        owner="unit",
        version=seq + 1,
        from_status=JobStatus.NEW,
        to_status=JobStatus.LAUNCHING,
        attempt=0,
    )
    return CloudEvent.wrap(data, time=FakeClock().now())


def consumer_of(
    bus: MemoryBus,
    handler: Callable[[CloudEvent, BusRecord], Awaitable[None]],
    *,
    group: str = "g",
    clock: FakeClock | None = None,
    sleep: SleepRecorder | None = None,
    **config: object,
) -> Consumer[CloudEvent]:
    return Consumer.for_events(
        bus,
        group,
        [TOPIC],
        handler,
        config=ConsumerConfig(poll_timeout_s=0.05, dead_letter_topic=DLQ, **config),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
        sleep=sleep or SleepRecorder(),
    )


async def letters_on(bus: MemoryBus) -> list[DeadLetter]:
    source = bus.source("dlq-reader", [DLQ])
    records = await source.fetch(100, 0.01)
    await source.close()
    return [decode_event(r.value).data for r in records]  # type: ignore[misc]


def keys_on_distinct_partitions(count: int) -> list[str]:
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < count:
        keys.setdefault(partition_for(f"k{n}", 8), f"k{n}")
        n += 1
    return list(keys.values())


async def test_a_failing_handler_backs_off_doubling_up_to_the_cap_then_dead_letters() -> None:
    """A non-retriable failure is tried handler_attempts times with doubling waits capped at
    max_backoff_s, then dead-lettered with the clock's time, the group and the attempts."""
    bus, clock, sleep = MemoryBus(), FakeClock(), SleepRecorder()
    ev = event("job-1", 0)
    await bus.publish(TOPIC, ev)

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        raise ValueError("bad input")

    consumer = consumer_of(
        bus,
        handle,
        clock=clock,
        sleep=sleep,
        handler_attempts=4,
        handler_backoff_s=0.1,
        max_backoff_s=0.25,
    )
    assert await consumer.run_once() == 1
    assert sleep.waits == [0.1, 0.2, 0.25]
    [letter] = await letters_on(bus)
    assert letter.error_kind == "handler"
    assert letter.attempts == 4
    assert letter.reason == "ValueError: bad input"
    assert letter.failed_at == clock.now()
    assert letter.consumer_group == "g"
    assert (letter.original_topic, letter.original_offset) == (TOPIC, 0)
    assert letter.original_partition == partition_for("job-1", 8)
    assert consumer.dead_lettered == 1
    assert consumer.handled == 0


async def test_retriable_errors_never_exhaust_the_attempts() -> None:
    """A retriable error is retried past handler_attempts, with capped backoff, until the
    handler succeeds; nothing is dead-lettered."""
    bus, sleep = MemoryBus(), SleepRecorder()
    await bus.publish(TOPIC, event("job-1", 0))
    calls = 0

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise InfrastructureUnavailable("store down")

    consumer = consumer_of(
        bus, handle, sleep=sleep, handler_attempts=1, handler_backoff_s=1.0, max_backoff_s=4.0
    )
    await consumer.run_once()
    assert calls == 6
    assert sleep.waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert (consumer.handled, consumer.dead_lettered) == (1, 0)
    assert await letters_on(bus) == []


async def test_binary_garbage_is_dead_lettered_as_base64_without_calling_the_handler() -> None:
    """Bytes that are not UTF-8 are kept in the dead letter base64-encoded, kind "decode"."""
    bus = MemoryBus()
    await bus.publish_raw(TOPIC, "k", b"\xff\xfe\x00")
    called = False

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        nonlocal called
        called = True

    await consumer_of(bus, handle).run_once()
    [letter] = await letters_on(bus)
    assert not called
    assert letter.error_kind == "decode"
    assert letter.original_value_encoding == "base64"
    assert base64.b64decode(letter.original_value) == b"\xff\xfe\x00"
    assert letter.attempts == 0


async def test_a_custom_decoder_rejection_keeps_its_kind() -> None:
    """A consumer of non-CloudEvent payloads dead-letters what its decoder rejects, under
    the kind named at the start of the reason."""
    bus = MemoryBus()
    await bus.publish_raw(TOPIC, "k", b"too short")
    await bus.publish_raw(TOPIC, "k", b"long enough to pass")
    seen: list[str] = []

    def decode(raw: bytes) -> str:
        if len(raw) < 10:
            raise EventRejected(f"schema: {len(raw)} bytes is under the minimum of 10")
        return raw.decode()

    async def handle(text: str, record: BusRecord) -> None:
        seen.append(text)

    consumer = Consumer[str](
        bus,
        "g",
        [TOPIC],
        handle,
        decode=decode,
        config=ConsumerConfig(dead_letter_topic=DLQ),
        sleep=SleepRecorder(),
    )
    await consumer.run_once()
    [letter] = await letters_on(bus)
    assert seen == ["long enough to pass"]
    assert letter.error_kind == "schema"
    assert letter.reason == "schema: 9 bytes is under the minimum of 10"


def _collecting(bus: MemoryBus, seen: list[str], **filters: object) -> Consumer[CloudEvent]:
    """A consumer of TOPIC (with the `wanted` / `statuses` filters given) that appends the id
    of each event its handler sees to `seen`."""

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        seen.append(received.id)

    return Consumer.for_events(
        bus,
        "g",
        [TOPIC],
        handle,
        config=ConsumerConfig(poll_timeout_s=0.05, dead_letter_topic=DLQ),
        sleep=SleepRecorder(),
        **filters,  # type: ignore[arg-type]
    )


async def test_a_consumer_of_some_types_passes_over_the_others_and_commits_them() -> None:
    """With `wanted`, the handler sees only those types; other stoker events, even invalid
    ones, are passed over unvalidated and committed; an invalid wanted event and an
    unknown type are still dead-lettered."""
    bus = MemoryBus()
    retry = JobRetryScheduled(
        job_id="job-1", attempt=1, next_attempt_at=FakeClock().now(), reason="CapacityError"
    )
    wanted = event("job-1", 0)
    broken_unwanted = orjson.loads(CloudEvent.wrap(retry, time=FakeClock().now()).to_json())
    broken_unwanted["data"]["attempt"] = "not a number"
    broken_wanted = orjson.loads(wanted.to_json())
    broken_wanted["data"]["version"] = 0
    await bus.publish(TOPIC, CloudEvent.wrap(retry, time=FakeClock().now()))
    await bus.publish(TOPIC, wanted)
    for doc in (broken_unwanted, broken_wanted, {**broken_wanted, "type": "nobody.knows"}):
        await bus.publish_raw(TOPIC, "job-1", orjson.dumps(doc))
    seen: list[str] = []
    consumer = _collecting(bus, seen, wanted={JobStatusChanged})
    assert await consumer.run_once() == 5
    assert seen == [wanted.id]
    assert (consumer.handled, consumer.passed_over, consumer.dead_lettered) == (1, 2, 2)
    kinds = [(letter.original_offset, letter.error_kind) for letter in await letters_on(bus)]
    assert kinds == [(3, "schema"), (4, "unknown-type")]
    again = bus.source("g", [TOPIC])
    assert await again.fetch(10, 0.01) == []
    await again.close()


async def test_a_consumer_of_some_statuses_passes_over_changes_to_the_others() -> None:
    """With `statuses`, the handler sees only status changes to those statuses; a change to
    another one is passed over unvalidated, even when invalid, and an invalid change to a
    wanted status is still dead-lettered."""
    bus = MemoryBus()

    def change(to_status: JobStatus, version: int) -> CloudEvent:
        data = JobStatusChanged(
            job_id="job-1",
            owner="unit",
            version=version,
            from_status=None,
            to_status=to_status,
            attempt=1,
        )
        return CloudEvent.wrap(data, time=FakeClock().now())

    new, launched, completed = (
        change(JobStatus.NEW, 1),
        change(JobStatus.LAUNCHED, 2),
        change(JobStatus.COMPLETED, 3),
    )
    broken_launched = orjson.loads(launched.to_json())
    broken_launched["data"]["version"] = 0
    broken_completed = orjson.loads(completed.to_json())
    broken_completed["data"]["version"] = 0
    await bus.publish_many(TOPIC, [new, launched, completed])
    for doc in (broken_launched, broken_completed):
        await bus.publish_raw(TOPIC, "job-1", orjson.dumps(doc))
    seen: list[str] = []
    consumer = _collecting(
        bus, seen, wanted={JobStatusChanged}, statuses={JobStatus.NEW, JobStatus.COMPLETED}
    )
    assert await consumer.run_once() == 5
    assert seen == [new.id, completed.id]
    assert (consumer.handled, consumer.passed_over, consumer.dead_lettered) == (2, 2, 1)
    [letter] = await letters_on(bus)
    assert (letter.original_offset, letter.error_kind) == (4, "schema")


async def test_a_record_is_committed_only_once_it_is_handled_or_dead_lettered() -> None:
    """When a dead letter cannot be written, the batch fails and that record and the ones
    after it are not committed: the next member gets them again, but not the ones before."""
    bus = DeadLettersDown()
    events = [event("job-1", i) for i in range(3)]
    await bus.publish_many(TOPIC, events)

    async def fail_second(received: CloudEvent, record: BusRecord) -> None:
        if received.id == events[1].id:
            raise ValueError("cannot")

    with pytest.raises(InfrastructureUnavailable):
        await consumer_of(bus, fail_second, handler_attempts=1).run(asyncio.Event())

    source = bus.source("g", [TOPIC])
    again = await source.fetch(10, 0.01)
    assert [r.offset for r in again] == [1, 2]


async def test_after_a_failed_batch_the_consumer_starts_again_from_the_committed_position() -> None:
    """A consumer whose batch failed part-way does not skip the records it had fetched but
    not handled: its next run_once reads them again."""
    bus = DeadLettersDown()
    events = [event("job-1", i) for i in range(3)]
    await bus.publish_many(TOPIC, events)
    handled: list[str] = []

    async def fail_second(received: CloudEvent, record: BusRecord) -> None:
        if received.id == events[1].id:
            raise ValueError("cannot")
        handled.append(received.id)

    consumer = consumer_of(bus, fail_second, handler_attempts=1)
    with pytest.raises(InfrastructureUnavailable):
        await consumer.run_once()
    bus.recover()
    assert await consumer.run_once() == 2
    await consumer.close()
    assert handled == [events[0].id, events[2].id]
    assert [letter.original_offset for letter in await letters_on(bus)] == [1]


async def test_partitions_run_concurrently_and_each_keeps_its_order() -> None:
    """Records of different partitions are handled at the same time; within a partition
    they are handled one by one, in offset order."""
    bus = MemoryBus()
    slow, fast = keys_on_distinct_partitions(2)
    await bus.publish_many(TOPIC, [event(slow, i) for i in range(3)])
    await bus.publish_many(TOPIC, [event(fast, i) for i in range(3)])
    fast_done = asyncio.Event()
    order: list[tuple[str, int]] = []

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        assert isinstance(received.data, JobStatusChanged)
        if received.subject == slow and received.data.version == 1:
            # Finishing needs the other partition to be handled meanwhile.
            await asyncio.wait_for(fast_done.wait(), 5)
        order.append((received.subject, received.data.version))
        if sum(1 for key, _ in order if key == fast) == 3:
            fast_done.set()

    assert await consumer_of(bus, handle).run_once() == 6
    assert [v for k, v in order if k == slow] == [1, 2, 3]
    assert [v for k, v in order if k == fast] == [1, 2, 3]
    assert order[0][0] == fast


async def test_run_finishes_the_batch_in_hand_commits_and_leaves() -> None:
    """Setting stop while a batch is handled lets the batch finish and be committed; the
    member then leaves, and a new member of the group sees none of those records."""
    bus = MemoryBus()
    await bus.publish_many(TOPIC, [event("job-1", i) for i in range(5)])
    stop = asyncio.Event()
    handled: list[str] = []

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        stop.set()
        handled.append(received.id)

    await asyncio.wait_for(consumer_of(bus, handle).run(stop), 5)
    assert len(handled) == 5
    source = bus.source("g", [TOPIC])
    assert await source.fetch(10, 0.01) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_batch", 0, "max_batch must be >= 1, got 0"),
        ("handler_attempts", 0, "handler_attempts must be >= 1, got 0"),
        ("poll_timeout_s", 0.0, "poll_timeout_s must be > 0, got 0.0"),
        ("handler_backoff_s", -1.0, "handler_backoff_s must be >= 0, got -1.0"),
        ("max_backoff_s", 0.01, r"max_backoff_s \(0.01\) must be >= handler_backoff_s \(0.05\)"),
    ],
)
def test_config_rejects_bad_values_and_names_them(field: str, value: float, message: str) -> None:
    """ConsumerConfig refuses nonsense at construction, showing the field and the value."""
    with pytest.raises(ValueError, match=message):
        ConsumerConfig(**{field: value})  # type: ignore[arg-type]


async def test_an_empty_fetch_returns_zero_without_committing() -> None:
    """With nothing to read, run_once waits at most poll_timeout_s and reports 0."""
    bus = MemoryBus()

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        raise AssertionError("nothing should be handled")

    assert await consumer_of(bus, handle).run_once() == 0


async def test_a_background_consumer_opens_its_member_as_one() -> None:
    """`ConsumerConfig.background` reaches the bus when the member is opened; the default
    member is an eager one."""
    bus = SourceRecordingBus()
    await bus.start()

    async def ignore(_event: CloudEvent, _record: BusRecord) -> None:
        return None

    for group, config in (("eager", None), ("lazy", BACKGROUND)):
        consumer = Consumer.for_events(bus, group, [TOPIC], ignore, config=config)
        assert await consumer.run_once() == 0
        await consumer.close()
    assert bus.background == {"eager": False, "lazy": True}


class InProgress:
    """A handler that yields to the loop a few times per record and remembers, per key,
    the versions it handled and how many calls were in progress at once."""

    def __init__(self) -> None:
        self.handled: dict[str, list[int]] = {}
        self.now = 0
        self.most = 0

    async def __call__(self, received: CloudEvent, record: BusRecord) -> None:
        assert isinstance(received.data, JobStatusChanged)
        self.now += 1
        self.most = max(self.most, self.now)
        for _ in range(3):
            await asyncio.sleep(0)
        self.handled.setdefault(received.subject, []).append(received.data.version)
        self.now -= 1


async def test_an_in_turn_consumer_handles_partitions_one_after_another_in_order() -> None:
    """`in_turn` (the launch path's consumer): a batch's partitions are handled one after
    another, never two records at once, each partition in offset order, and the batch is
    committed; by default the partitions of a batch are handled side by side."""
    keys = keys_on_distinct_partitions(3)
    for config, most in (({"in_turn": True}, 1), ({}, 3)):
        bus = MemoryBus()
        for key in keys:
            await bus.publish_many(TOPIC, [event(key, i) for i in range(3)])
        handle = InProgress()
        assert await consumer_of(bus, handle, **config).run_once() == 9
        assert handle.most == most
        assert handle.handled == {key: [1, 2, 3] for key in keys}
        assert await bus.source("g", [TOPIC]).fetch(10, 0.01) == []  # committed


async def test_an_in_turn_consumer_that_fails_gives_up_the_batch_uncommitted() -> None:
    """A record whose dead-lettering fails ends the batch as it does for any consumer: the
    member closes, and the group reads the batch again from the committed position."""
    bus = DeadLettersDown()
    await bus.publish(TOPIC, event("job-1", 0))

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        raise ValueError("bad record")

    consumer = consumer_of(bus, handle, in_turn=True, handler_attempts=1)
    with pytest.raises(InfrastructureUnavailable):
        await consumer.run_once()
    assert len(await bus.source("g", [TOPIC]).fetch(10, 0.01)) == 1
