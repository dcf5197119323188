"""The duplicate stream's agent under Faust's `test_context()`, with the in-memory store, the
real router over a fake model, and the fake `Outputs`."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest

from stoker.core.clock import FakeClock
from stoker.inference.router.models import ModelSet
from stoker.stream import StreamSettings, build_app
from stoker.stream.gaps import NoGaps
from stoker.stream.publish import MemoryOutputs
from stoker.stream.state import DuplicateApp
from stoker.stream.views import current_windows
from tests.unit.router.fakes import FakePreprocessor, duplicate_backend

SETTINGS = StreamSettings(
    app_id="unit-stream", pairs_topic="pairs", scores_topic="scores", dead_letter_topic="dead"
)


BACKEND = duplicate_backend(batch_sizes=(1, 8, 32))


def models() -> ModelSet:
    return ModelSet({"duplicate": BACKEND}, FakePreprocessor(), workers=1)


def pair(i: int, title: str = "kettle") -> bytes:
    return orjson.dumps(
        {
            "pair_id": f"p-{i}",
            "a": {"title": f"{title} {i}", "product_type": "Kettle"},
            "b": {"title": f"other {i}"},
        }
    )


@pytest.fixture
async def stream() -> AsyncIterator[tuple[DuplicateApp, MemoryOutputs]]:
    outputs = MemoryOutputs()
    built = build_app(
        SETTINGS,
        models,
        broker="127.0.0.1:1",
        authenticator=None,
        outputs=lambda _app: outputs,
        gap_probe=NoGaps(),
        clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)),
    )
    built.app.finalize()
    built.app.flow_control.resume()
    yield built, outputs
    await built.engine.close()
    # Faust's stream iterator makes the app's Kafka consumer on first use, and that consumer's
    # thread gets an event loop of its own at construction; under test_context the thread
    # never starts, so nothing closes that loop. Close every such idle loop here.
    # type(), not isinstance(): isinstance reads __class__, which some objects in the heap
    # (torch's deprecated aliases) answer with a warning.
    for obj in gc.get_objects():
        if issubclass(type(obj), asyncio.AbstractEventLoop) and not (
            obj.is_running() or obj.is_closed()
        ):
            obj.close()


async def test_each_pair_gets_one_score_keyed_by_pair_id(
    stream: tuple[DuplicateApp, MemoryOutputs],
) -> None:
    built, outputs = stream
    async with built.agent.test_context() as agent:
        for i in range(5):
            await agent.put(pair(i), key=f"p-{i}".encode(), partition=0)
    scores = outputs.on("scores")
    assert [s.key for s in scores] == [f"p-{i}".encode() for i in range(5)]
    data = [orjson.loads(s.value)["data"] for s in scores]
    assert [d["pair_id"] for d in data] == [f"p-{i}" for i in range(5)]
    assert all(0 <= d["score"] <= 1 and d["model"] == "duplicate" for d in data)
    assert built.counters.scored == 5


async def test_bad_records_are_dead_lettered_with_the_reason_and_the_stream_goes_on(
    stream: tuple[DuplicateApp, MemoryOutputs],
) -> None:
    built, outputs = stream
    blank = orjson.dumps({"pair_id": "b", "a": {"title": "  "}, "b": {"title": "x"}})
    async with built.agent.test_context() as agent:
        await agent.put(b"{oops", key=b"k1", partition=1)
        await agent.put(orjson.dumps({"pair_id": "x", "a": {"title": "t"}}), key=b"k2")
        await agent.put(blank, key=b"k3")
        await agent.put(pair(1), key=b"p-1")
    letters = [orjson.loads(s.value)["data"] for s in outputs.on("dead")]
    assert [(d["original_key"], d["error_kind"]) for d in letters] == [
        ("k1", "decode"),
        ("k2", "schema"),
        ("k3", "schema"),
    ]
    assert letters[0]["reason"].startswith("decode: not JSON")
    assert "b: Field required" in letters[1]["reason"]
    assert "a.title" in letters[2]["reason"]
    assert letters[0]["original_value"] == "{oops"
    assert [s.key for s in outputs.on("scores")] == [b"p-1"]
    assert built.counters.dead_lettered == 3


async def test_a_repeat_with_the_same_content_is_served_from_the_table(
    stream: tuple[DuplicateApp, MemoryOutputs],
) -> None:
    """Same pair id and content: the stored score, no model run. New content: scored again."""
    built, outputs = stream
    async with built.agent.test_context() as agent:
        await agent.put(pair(1), key=b"p-1")
        runs = len(BACKEND.runs)
        await agent.put(pair(1), key=b"p-1")
        assert len(BACKEND.runs) == runs
        await agent.put(pair(1, title="revised kettle"), key=b"p-1")
        assert len(BACKEND.runs) > runs
    first, repeat, changed = (orjson.loads(s.value)["data"] for s in outputs.on("scores"))
    assert repeat["score"] == first["score"]
    assert changed["pair_id"] == "p-1"
    assert built.counters.served_from_table == 1
    assert built.counters.scored == 2


async def test_windows_count_pairs_and_duplicates_per_product_type(
    stream: tuple[DuplicateApp, MemoryOutputs],
) -> None:
    built, outputs = stream
    async with built.agent.test_context() as agent:
        for i in range(6):
            await agent.put(pair(i), key=f"p-{i}".encode(), partition=i % 2)
        await agent.put(b"not a pair", key=b"bad")
        rows = current_windows(built)
    assert {r.product_type for r in rows} == {"kettle"}
    assert sum(r.pairs for r in rows) == 6
    scores = [orjson.loads(s.value)["data"]["score"] for s in outputs.on("scores")]
    assert sum(r.duplicates for r in rows) == sum(s >= SETTINGS.duplicate_threshold for s in scores)


async def test_outputs_go_with_the_partition_of_their_pair(
    stream: tuple[DuplicateApp, MemoryOutputs],
) -> None:
    """Every output names the source partition, so it joins that partition's transaction;
    the scores table's changelog record goes to that same partition."""
    built, outputs = stream
    async with built.agent.test_context() as agent:
        await agent.put(pair(1), key=b"p-1", partition=3)
    assert {s.source[1] for s in outputs.sent} == {3}
    changelog = [s for s in outputs.sent if s.topic.endswith("scores-changelog")]
    assert [(s.key, s.partition) for s in changelog] == [(b"p-1", 3)]
