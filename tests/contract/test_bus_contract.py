"""The event bus contract: the same cases over every adapter in `bus_factories.FACTORIES`."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from stoker.bus.consumer import Consumer, ConsumerConfig
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.events import CloudEvent, DeadLetter, JobStatusChanged
from stoker.core.job import JobStatus
from stoker.ports.bus import BusRecord, EventBus
from tests.contract.bus_factories import FACTORIES, BusFactory, BusUnderTest, FactoryEnv
from tests.support.events import TopicReader
from tests.support.processes import kill_when
from tests.support.waiting import wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _params(keep: Callable[[BusFactory], bool] = lambda f: True) -> list[Any]:
    return [pytest.param(name, marks=f.marks) for name, f in FACTORIES.items() if keep(f)]


def _env(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BusFactory, FactoryEnv]:
    """The factory of this parameter, with the infrastructure it (and only it) needs."""
    factory = FACTORIES[request.param]
    found = {name: request.getfixturevalue(name) for name in factory.needs}
    return factory, FactoryEnv(tmp_path, **found)


async def _open(chosen: tuple[BusFactory, FactoryEnv]) -> AsyncIterator[BusUnderTest]:
    factory, env = chosen
    async with factory.open(env) as case:
        yield case


@pytest.fixture(params=_params())
def any_bus(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BusFactory, FactoryEnv]:
    """Every adapter."""
    return _env(request, tmp_path)


@pytest.fixture(params=_params(lambda f: f.multi_member))
def group_bus(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BusFactory, FactoryEnv]:
    """Adapters whose consumer groups can have several active members."""
    return _env(request, tmp_path)


@pytest.fixture(params=_params(lambda f: f.cross_process))
def process_bus(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BusFactory, FactoryEnv]:
    """Adapters whose members may live in other processes."""
    return _env(request, tmp_path)


@pytest.fixture
async def case(any_bus: tuple[BusFactory, FactoryEnv]) -> AsyncIterator[BusUnderTest]:
    """A fresh, started bus of every adapter."""
    async for opened in _open(any_bus):
        yield opened


@pytest.fixture
async def shared_case(group_bus: tuple[BusFactory, FactoryEnv]) -> AsyncIterator[BusUnderTest]:
    """A fresh, started bus whose groups can have several active members."""
    async for opened in _open(group_bus):
        yield opened


@pytest.fixture
async def durable_case(process_bus: tuple[BusFactory, FactoryEnv]) -> AsyncIterator[BusUnderTest]:
    """A fresh, started bus whose members may live in other processes."""
    async for opened in _open(process_bus):
        yield opened


def _event(key: str, seq: int) -> CloudEvent:
    data = JobStatusChanged(
        job_id=key,
        owner="contract",
        version=seq + 1,
        from_status=JobStatus.NEW,
        to_status=JobStatus.LAUNCHING,
        attempt=0,
    )
    return CloudEvent.wrap(data, time=T0)


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0)


def _consumer(
    bus: EventBus,
    group: str,
    topics: list[str],
    handler: Callable[[CloudEvent, BusRecord], Any],
    dead_letter_topic: str,
    **config: Any,
) -> Consumer[CloudEvent]:
    settings = ConsumerConfig(poll_timeout_s=0.1, dead_letter_topic=dead_letter_topic, **config)
    return Consumer.for_events(bus, group, topics, handler, config=settings, sleep=_no_wait)


async def _run_until(
    consumers: list[Consumer[Any]], done: Callable[[], bool], timeout_s: float = 30.0
) -> None:
    """Run consumers until `done()` holds, then stop them (each commits its batch in hand)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
    try:
        await wait_until(done, timeout_s, interval_s=0.02, while_running=tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _dead_letters(case: BusUnderTest, topic: str, count: int) -> list[DeadLetter]:
    letters: list[DeadLetter] = []

    async def collect(event: CloudEvent, record: BusRecord) -> None:
        assert isinstance(event.data, DeadLetter)
        letters.append(event.data)

    reader = _consumer(case.bus, case.group("dlq"), [topic], collect, case.topic("unused"))
    await _run_until([reader], lambda: len(letters) >= count)
    return letters


async def test_published_events_all_arrive_as_typed_cloudevents(case: BusUnderTest) -> None:
    """Every published event reaches the group's handler, decoded into its typed model."""
    topic, dlq = case.topic(), case.topic("dlq")
    await case.bus.ensure_topics([topic, dlq])
    events = [_event(f"job-{i % 10}", i) for i in range(200)]
    await case.bus.publish_many(topic, events[:150])
    for event in events[150:]:
        await case.bus.publish(topic, event)
    seen: set[str] = set()

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        assert isinstance(event.data, JobStatusChanged)
        assert record.key == event.subject == event.data.job_id
        seen.add(event.id)

    await _run_until(
        [_consumer(case.bus, case.group(), [topic], handle, dlq)],
        lambda: len(seen) >= len(events),
    )
    assert seen == {e.id for e in events}


async def test_per_key_order_holds_over_10000_messages(case: BusUnderTest) -> None:
    """10,000 events over 8 keys are handled in publish order within each key."""
    topic, dlq = case.topic(), case.topic("dlq")
    await case.bus.ensure_topics([topic, dlq])
    per_key = 1250
    keys = [f"order-{k}" for k in range(8)]
    events = [_event(keys[i % 8], i // 8) for i in range(per_key * 8)]
    for start in range(0, len(events), 1000):
        await case.bus.publish_many(topic, events[start : start + 1000])
    handled: dict[str, list[int]] = defaultdict(list)
    total = 0

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        nonlocal total
        assert isinstance(event.data, JobStatusChanged)
        handled[event.subject].append(event.data.version - 1)
        total += 1

    consumer = _consumer(case.bus, case.group(), [topic], handle, dlq, max_batch=1000)
    await _run_until([consumer], lambda: total >= len(events), timeout_s=60)
    assert {k: handled[k] for k in keys} == {k: list(range(per_key)) for k in keys}


async def test_a_killed_consumer_process_records_are_delivered_again(
    durable_case: BusUnderTest, tmp_path: Path
) -> None:
    """A consumer process killed with SIGKILL after handling a batch but before committing
    it: a new member of the same group receives those records again."""
    case = durable_case
    topic, dlq, group = case.topic(), case.topic("dlq"), case.group()
    await case.bus.ensure_topics([topic, dlq])
    events = [_event(f"crash-{i % 5}", i) for i in range(40)]
    await case.bus.publish_many(topic, events)
    out, ready = tmp_path / "handled.txt", tmp_path / "ready.json"
    await kill_when(
        "tests.contract.bus_worker",
        [
            *("--spec", json.dumps(case.worker_spec), "--group", group, "--topic", topic),
            *("--out", str(out), "--ready", str(ready)),
        ],
        ready.exists,
        tmp_path / "worker.log",
        what="the worker handling a batch",
    )
    handled = set(out.read_text().split())
    assert handled, "the worker handled nothing before the kill"
    assert handled <= {e.id for e in events}

    seen: set[str] = set()

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        seen.add(event.id)

    await _run_until(
        [_consumer(case.bus, group, [topic], handle, dlq)],
        lambda: handled <= seen,
        timeout_s=30 + case.takeover_s,
    )


async def test_a_member_leaving_without_commit_hands_its_records_back(
    case: BusUnderTest,
) -> None:
    """Records fetched by a member that closes without committing go to the next member."""
    topic, group = case.topic(), case.group()
    await case.bus.ensure_topics([topic])
    events = [_event(f"leave-{i % 4}", i) for i in range(20)]
    await case.bus.publish_many(topic, events)
    async with TopicReader(case.bus, topic, group=group) as first:
        await first.read_until(lambda: bool(first.records), 30)
    fetched = first.records

    wanted = {(r.topic, r.partition, r.offset) for r in fetched}
    async with TopicReader(case.bus, topic, group=group) as second:
        await second.read_until(
            lambda: wanted <= {(r.topic, r.partition, r.offset) for r in second.records}, 30
        )
    assert {r.value for r in fetched} <= {r.value for r in second.records}


async def test_committed_records_are_not_delivered_to_a_new_member(case: BusUnderTest) -> None:
    """Once a member handled and committed records, a later member of the group starts
    after them."""
    topic, dlq, group = case.topic(), case.topic("dlq"), case.group()
    await case.bus.ensure_topics([topic, dlq])
    old = [_event(f"commit-{i % 6}", i) for i in range(60)]
    await case.bus.publish_many(topic, old)
    first_seen: set[str] = set()

    async def first(event: CloudEvent, record: BusRecord) -> None:
        first_seen.add(event.id)

    await _run_until(
        [_consumer(case.bus, group, [topic], first, dlq)], lambda: len(first_seen) >= len(old)
    )

    new = [_event(f"commit-{i % 6}", i) for i in range(60, 90)]
    await case.bus.publish_many(topic, new)
    later_seen: set[str] = set()

    async def later(event: CloudEvent, record: BusRecord) -> None:
        later_seen.add(event.id)

    new_ids = {e.id for e in new}
    await _run_until(
        [_consumer(case.bus, group, [topic], later, dlq)], lambda: new_ids <= later_seen
    )
    assert later_seen == new_ids


async def test_undecodable_invalid_and_unknown_records_are_dead_lettered(
    case: BusUnderTest,
) -> None:
    """Malformed bytes, a schema-invalid event and an unknown type go to the dead-letter
    topic with their kind and reason, and the consumer goes on to the next record."""
    topic, dlq = case.topic(), case.topic("dlq")
    await case.bus.ensure_topics([topic, dlq])
    envelope = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:test",
        "subject": "bad",
        "time": "2026-01-01T00:00:00Z",
    }
    await case.bus.publish_raw(topic, "bad", b"\xff\x00 not json")
    invalid = {**envelope, "type": JobStatusChanged.TYPE, "data": {"job_id": "bad"}}
    await case.bus.publish_raw(topic, "bad", orjson.dumps(invalid))
    unknown = {**envelope, "type": "stoker.nothing.v1", "data": {}}
    await case.bus.publish_raw(topic, "bad", orjson.dumps(unknown))
    good = _event("bad", 3)
    await case.bus.publish(topic, good)
    handled: list[str] = []

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        handled.append(event.id)

    consumer = _consumer(case.bus, case.group(), [topic], handle, dlq)
    await _run_until([consumer], lambda: good.id in handled)
    assert handled == [good.id]

    letters = sorted(await _dead_letters(case, dlq, 3), key=lambda d: d.original_offset)
    assert [d.error_kind for d in letters] == ["decode", "schema", "unknown-type"]
    assert letters[0].original_value_encoding == "base64"
    assert "owner: Field required" in letters[1].reason
    assert "stoker.nothing.v1" in letters[2].reason
    assert {d.original_topic for d in letters} == {topic}
    assert all(d.attempts == 0 and d.original_key == "bad" for d in letters)


async def test_a_handler_that_keeps_failing_is_dead_lettered_and_skipped(
    case: BusUnderTest,
) -> None:
    """A record whose handler fails every time is dead-lettered after handler_attempts
    tries, and the next record of the same key is handled."""
    topic, dlq = case.topic(), case.topic("dlq")
    await case.bus.ensure_topics([topic, dlq])
    poison, after = _event("poison", 0), _event("poison", 1)
    await case.bus.publish_many(topic, [poison, after])
    calls: dict[str, int] = defaultdict(int)

    async def handle(event: CloudEvent, record: BusRecord) -> None:
        calls[event.id] += 1
        if event.id == poison.id:
            raise ValueError("cannot handle this one")

    consumer = _consumer(case.bus, case.group(), [topic], handle, dlq, handler_attempts=3)
    await _run_until([consumer], lambda: calls[after.id] >= 1)
    assert calls[poison.id] == 3
    [letter] = await _dead_letters(case, dlq, 1)
    assert letter.error_kind == "handler"
    assert letter.attempts == 3
    assert letter.reason == "ValueError: cannot handle this one"
    assert orjson.loads(letter.original_value)["id"] == poison.id


async def test_a_retriable_handler_error_is_retried_until_it_clears(case: BusUnderTest) -> None:
    """A retriable error (e.g. the store is down) is retried past handler_attempts and the
    record is handled once it clears, never dead-lettered."""
    topic, dlq = case.topic(), case.topic("dlq")
    await case.bus.ensure_topics([topic, dlq])
    event = _event("outage", 0)
    await case.bus.publish(topic, event)
    calls = 0
    done = False

    async def handle(received: CloudEvent, record: BusRecord) -> None:
        nonlocal calls, done
        calls += 1
        if calls <= 4:
            raise InfrastructureUnavailable("store unreachable")
        done = True

    consumer = _consumer(case.bus, case.group(), [topic], handle, dlq, handler_attempts=2)
    await _run_until([consumer], lambda: done)
    assert calls == 5
    assert consumer.dead_lettered == 0
    assert consumer.handled == 1


async def test_two_members_split_the_work_without_handling_a_record_twice_at_once(
    shared_case: BusUnderTest,
) -> None:
    """Two members of one group both get partitions, and no record is ever in the hands of
    both at the same time."""
    case = shared_case
    topic, dlq, group = case.topic(), case.topic("dlq"), case.group()
    await case.bus.ensure_topics([topic, dlq])
    in_hand: dict[str, str] = {}
    overlaps: list[str] = []
    by_member: dict[str, set[str]] = {"a": set(), "b": set()}

    def handler(member: str) -> Callable[[CloudEvent, BusRecord], Any]:
        async def handle(event: CloudEvent, record: BusRecord) -> None:
            if event.id in in_hand:
                overlaps.append(event.id)
            in_hand[event.id] = member
            # Give the other member every chance to pick up the same record meanwhile.
            await asyncio.sleep(0)
            in_hand.pop(event.id, None)
            by_member[member].add(event.id)

        return handle

    members = {m: _consumer(case.bus, group, [topic], handler(m), dlq) for m in ("a", "b")}
    published: set[str] = set()
    round_no = 0

    def all_handled() -> bool:
        return published <= by_member["a"] | by_member["b"]

    stop = asyncio.Event()
    # The second member joins while the first is busy, so partitions move under load.
    tasks = {"a": asyncio.create_task(members["a"].run(stop))}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    try:
        while not (all_handled() and by_member["a"] and by_member["b"]):
            assert loop.time() < deadline, f"work was not split: {len(published)} published"
            for task in tasks.values():
                assert not task.done(), task.result()
            if by_member["a"] and "b" not in tasks:
                tasks["b"] = asyncio.create_task(members["b"].run(stop))
            if all_handled():
                batch = [_event(f"split-{round_no}-{k}", k) for k in range(32)]
                await case.bus.publish_many(topic, batch)
                published |= {e.id for e in batch}
                round_no += 1
            await asyncio.wait(tasks.values(), timeout=0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks.values())
    assert overlaps == []
    assert by_member["a"]
    assert by_member["b"]
