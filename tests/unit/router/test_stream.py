"""Streaming duplicate detection over the in-process bus and fake models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.inference.pairs import DuplicatePair, DuplicateScore
from stoker.inference.router import BatchingConfig, Router
from stoker.inference.stream.processor import DuplicateStream, StreamConfig, parse_scores
from tests.support.events import events_on, read_all
from tests.support.waiting import wait_until
from tests.unit.router.fakes import FakePreprocessor, duplicate_backend


def pair(i: int) -> dict[str, object]:
    return {
        "pair_id": f"p{i}",
        "a": {"title": f"widget {i}", "product_type": "tool", "description": "steel"},
        "b": {"title": f"widget {i % 7}", "description": "steel handle"},
    }


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router(
        {"duplicate": duplicate_backend()},
        FakePreprocessor(),
        configs={"duplicate": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0)},
    )
    await r.start()
    yield r
    await r.drain(5)


async def publish(bus: MemoryBus, values: Sequence[bytes]) -> None:
    for i, value in enumerate(values):
        await bus.publish_raw(topics.DUPLICATE_PAIRS, f"k{i}", value)


async def test_n_pairs_in_give_n_scores_out_keyed_by_pair_id(router: Router) -> None:
    """Every pair published gets exactly one score event carrying its pair id."""
    bus = MemoryBus()
    await publish(bus, [orjson.dumps(pair(i)) for i in range(50)])
    stream = DuplicateStream(bus, router, StreamConfig(max_batch=16), clock=FakeClock())
    while await stream.run_once():
        pass
    records = await read_all(bus, topics.DUPLICATE_SCORES)
    assert len(records) == 50
    assert {r.key for r in records} == {f"p{i}" for i in range(50)}
    events = [decode_event_score(r.value) for r in records]
    assert all(0.0 <= e.score <= 1.0 for e in events)
    assert stream.scored == 50


def decode_event_score(raw: bytes) -> DuplicateScore:
    doc = orjson.loads(raw)
    assert doc["type"] == DuplicateScore.TYPE
    return DuplicateScore.model_validate(doc["data"])


async def test_stream_scores_equal_router_scores(router: Router) -> None:
    """A pair scored on the stream gets the same score as through Router.duplicates."""
    bus = MemoryBus()
    await publish(bus, [orjson.dumps(pair(i)) for i in range(10)])
    stream = DuplicateStream(bus, router, StreamConfig(max_batch=64))
    await stream.run_once()
    scores = parse_scores(await read_all(bus, topics.DUPLICATE_SCORES))
    for i in range(10):
        p = DuplicatePair.model_validate(pair(i))
        [direct] = await router.duplicates([(p.a.as_text(), p.b.as_text())])
        assert scores[f"p{i}"] == pytest.approx(direct.score, abs=1e-6)


async def test_malformed_pairs_go_to_dead_letter_and_the_stream_goes_on(router: Router) -> None:
    """Bad JSON, missing fields, wrong types and blank text are dead-lettered; good pairs score."""
    bus = MemoryBus()
    bad = [
        b"{not json",
        orjson.dumps({"pair_id": "x1", "a": {"title": "t"}}),
        orjson.dumps({"pair_id": 7, "a": {"title": "t"}, "b": {"title": "u"}}),
        orjson.dumps({"pair_id": "x3", "a": {"title": "   "}, "b": {"title": "u"}}),
        b"\xff\xfe binary",
    ]
    await publish(bus, [orjson.dumps(pair(1)), *bad, orjson.dumps(pair(2))])
    stream = DuplicateStream(bus, router, StreamConfig(max_batch=100))
    await stream.run_once()
    assert set(parse_scores(await read_all(bus, topics.DUPLICATE_SCORES))) == {"p1", "p2"}
    letters = await events_on(bus, topics.DEAD_LETTER)
    assert len(letters) == 5
    kinds = sorted(getattr(letter, "error_kind") for letter in letters)  # noqa: B009
    assert kinds == ["decode", "decode", "schema", "schema", "schema"]
    reasons = " ".join(getattr(letter, "reason") for letter in letters)  # noqa: B009
    assert "b: Field required" in reasons
    assert "pair_id: Input should be a valid string" in reasons
    assert stream.dead_lettered == 5


class FailingBus(MemoryBus):
    """A bus whose scores publish fails once, as if the broker did not acknowledge."""

    fail_next = True

    async def publish_many(self, topic: str, events: Sequence[object]) -> None:  # type: ignore[override]
        if topic == topics.DUPLICATE_SCORES and self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker did not acknowledge")
        await super().publish_many(topic, events)  # type: ignore[arg-type]


async def test_positions_are_not_committed_when_publish_fails(router: Router) -> None:
    """If the scores are not acknowledged, nothing is committed and a new member rescored all."""
    bus = FailingBus()
    await publish(bus, [orjson.dumps(pair(i)) for i in range(8)])
    first = DuplicateStream(bus, router, StreamConfig(group="g", max_batch=100))
    with pytest.raises(ConnectionError):
        await first.run_once()
    await first.close()
    stop = asyncio.Event()
    second = DuplicateStream(bus, router, StreamConfig(group="g", max_batch=100))
    task = asyncio.ensure_future(second.run(stop))
    await wait_until(lambda: second.scored >= 8)
    stop.set()
    await task
    assert set(parse_scores(await read_all(bus, topics.DUPLICATE_SCORES))) == {
        f"p{i}" for i in range(8)
    }


async def test_overloaded_router_is_waited_out_not_dead_lettered() -> None:
    """When the router queue is full the batch backs off and is scored once room frees up."""
    backend = duplicate_backend()
    router = Router(
        {"duplicate": backend},
        FakePreprocessor(),
        configs={
            "duplicate": BatchingConfig(
                (1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0, queue_capacity=8
            )
        },
    )
    await router.start()
    backend.gate.clear()
    hold = asyncio.ensure_future(router.duplicates([("busy", "worker")]))
    await asyncio.to_thread(backend.entered.acquire, True, 5)
    filler = asyncio.ensure_future(router.duplicates([(f"x{i}", "y") for i in range(8)]))
    await wait_until(lambda: router.queued() == 8)
    backoffs: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        backoffs.append(seconds)
        if len(backoffs) == 3:
            backend.gate.set()  # room frees up after a few refusals
        await asyncio.sleep(0)

    bus = MemoryBus()
    await publish(bus, [orjson.dumps(pair(i)) for i in range(6)])
    stream = DuplicateStream(bus, router, StreamConfig(max_batch=8), sleep=fake_sleep)
    await stream.run_once()
    assert backoffs[:3] == [0.05, 0.1, 0.2]
    assert set(parse_scores(await read_all(bus, topics.DUPLICATE_SCORES))) == {
        f"p{i}" for i in range(6)
    }
    assert stream.dead_lettered == 0
    await asyncio.gather(hold, filler)
    await router.drain(5)


async def test_queue_smaller_than_a_batch_is_refused_at_construction(router: Router) -> None:
    """A stream batch must fit the router queue whole, or the stream could never progress."""
    with pytest.raises(ValueError, match=r"queue_capacity \(1024\) must be at least"):
        DuplicateStream(MemoryBus(), router, StreamConfig(max_batch=2048))
