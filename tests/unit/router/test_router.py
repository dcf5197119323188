"""The router's asyncio loop over fake backends: batching, replies, deadlines, drain, failure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from stoker.core.clock import FakeClock
from stoker.inference.router import (
    BatchingConfig,
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    QueueFull,
    Router,
    ShuttingDown,
)
from stoker.inference.router.timing import RequestTiming
from stoker.inference.router.timing import now as stamp
from stoker.ports.inference import PaddedBatch
from tests.support.waiting import wait_until
from tests.unit.router.fakes import FakeBackend, FakePreprocessor, duplicate_backend

QUERIES = [
    "red running shoes",
    "where is my order",
    "cancel subscription now please",
    "usb c cable",
    "how do i return a blender that arrived broken",
    "gift ideas",
    "laptop",
    "noise cancelling headphones under 100 dollars with long battery",
    "help",
    "kids bike with training wheels",
]


@pytest.fixture
def intent_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def router(intent_backend: FakeBackend) -> AsyncIterator[Router]:
    r = Router(
        {"intent": intent_backend, "duplicate": duplicate_backend()},
        FakePreprocessor(),
        configs={
            "intent": BatchingConfig(
                batch_sizes=(1, 2, 4, 8), seq_buckets=(8, 16, 32), max_queue_delay_ms=1.0
            ),
            "duplicate": BatchingConfig(
                batch_sizes=(1, 2, 4, 8), seq_buckets=(8, 16, 32), max_queue_delay_ms=1.0
            ),
        },
    )
    await r.start()
    yield r
    await r.drain(timeout_s=5)


async def test_start_warms_every_shape_before_ready() -> None:
    """Every (batch size, bucket) of every backend is run once before the router is ready."""
    intent, dup = FakeBackend(), duplicate_backend()
    r = Router({"intent": intent, "duplicate": dup}, FakePreprocessor())
    assert not r.ready
    await r.start()
    try:
        assert r.ready
        expected = {(b, s) for b in (1, 2, 4, 8) for s in (8, 16, 32)}
        assert intent.warmed == expected
        assert dup.warmed == expected
    finally:
        await r.drain(5)
    assert not r.ready


async def test_batched_scores_equal_unbatched_scores(
    router: Router, intent_backend: FakeBackend
) -> None:
    """Scores of queries batched together equal each query run alone, within tolerance."""
    alone = [await router.intent(q) for q in QUERIES]
    together = await asyncio.gather(*(router.intent(q) for q in QUERIES))
    backend = intent_backend
    assert any(real > 1 for _, _, real in backend.runs), "some requests really were batched"
    for one, many in zip(alone, together, strict=True):
        assert one.intent == many.intent
        assert one.scores == pytest.approx(many.scores, abs=1e-6)


async def test_batches_are_padded_to_allowed_shapes(
    router: Router, intent_backend: FakeBackend
) -> None:
    """Three queries of one bucket run as one batch padded to the allowed size 4."""
    backend = intent_backend
    backend.runs.clear()
    await asyncio.gather(*(router.intent(q) for q in ("a b", "c d", "e f")))
    assert backend.runs == [(4, 8, 3)]


async def test_oversized_query_is_truncated_and_says_so(
    router: Router, intent_backend: FakeBackend
) -> None:
    """A query longer than the largest bucket is cut to it and the reply is flagged."""
    result = await router.intent(" ".join(f"w{i}" for i in range(100)))
    assert result.truncated
    backend = intent_backend
    assert backend.runs[-1][1] == 32
    assert not (await router.intent("short one")).truncated


async def test_empty_query_is_invalid_input(router: Router) -> None:
    """An empty or blank query is refused with InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as caught:
        await router.intent("   ")
    assert caught.value.field == "query"
    assert caught.value.http_status == 422


async def test_duplicate_scores_batch_together_and_match_alone(router: Router) -> None:
    """Pairs of one call batch together and each score equals the pair scored alone."""
    pairs = [(QUERIES[i], QUERIES[-1 - i]) for i in range(6)]
    together = await router.duplicates(pairs)
    alone = [(await router.duplicates([p]))[0] for p in pairs]
    assert [r.score for r in together] == pytest.approx([r.score for r in alone], abs=1e-6)
    assert all(0.0 <= r.score <= 1.0 for r in together)


async def test_deadline_expiry_answers_with_timeout_and_never_runs() -> None:
    """A request whose deadline passes while the worker is busy gets DeadlineExceeded, unrun."""
    clock = FakeClock()
    backend = FakeBackend()
    r = Router(
        {"intent": backend},
        FakePreprocessor(),
        configs={"intent": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0)},
        clock=clock,
    )
    await r.start()
    backend.gate.clear()
    first = asyncio.ensure_future(r.intent("occupies the only worker"))
    await asyncio.to_thread(backend.entered.acquire, True, 5)
    late = asyncio.ensure_future(r.intent("waits too long", timeout_ms=50))
    await wait_until(lambda: r.queued() == 1)
    clock.advance(0.051)
    with pytest.raises(DeadlineExceeded) as caught:
        await asyncio.wait_for(late, 5)
    assert caught.value.http_status == 504
    backend.gate.set()
    await first
    await r.drain(5)
    assert [real for _, _, real in backend.runs if real] == [1], "the late request never ran"


async def test_realtime_intent_runs_before_queued_bulk_duplicates() -> None:
    """With one shared worker busy, a queued intent request runs before older bulk pairs."""
    intent, dup = FakeBackend(), duplicate_backend()
    r = Router(
        {"intent": intent, "duplicate": dup},
        FakePreprocessor(),
        configs={
            "intent": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0),
            "duplicate": BatchingConfig((1, 2), (8, 16, 32), max_queue_delay_ms=0),
        },
    )
    await r.start()
    order: list[str] = []
    dup.gate.clear()
    blocker = asyncio.ensure_future(r.duplicates([("x", "y")]))
    await asyncio.to_thread(dup.entered.acquire, True, 5)
    bulk = asyncio.ensure_future(r.duplicates([("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")]))
    bulk.add_done_callback(lambda _: order.append("bulk"))
    await wait_until(lambda: r.queued("duplicate") == 4)
    rt = asyncio.ensure_future(r.intent("real time"))
    rt.add_done_callback(lambda _: order.append("intent"))
    await wait_until(lambda: r.queued("intent") == 1)
    dup.gate.set()
    await asyncio.gather(blocker, bulk, rt)
    assert order == ["intent", "bulk"]
    await r.drain(5)


async def test_overload_rejects_fast_with_queue_full() -> None:
    """When the bounded queue is full, the next request fails at once with QueueFull."""
    backend = FakeBackend()
    r = Router(
        {"intent": backend},
        FakePreprocessor(),
        configs={
            "intent": BatchingConfig((1, 2), (8, 16, 32), max_queue_delay_ms=0, queue_capacity=3)
        },
    )
    await r.start()
    backend.gate.clear()
    running = asyncio.ensure_future(r.intent("busy"))
    await asyncio.to_thread(backend.entered.acquire, True, 5)
    waiting = [asyncio.ensure_future(r.intent(f"q{i}")) for i in range(3)]
    await wait_until(lambda: r.queued() == 3)
    with pytest.raises(QueueFull) as caught:
        await r.intent("one too many")
    assert caught.value.http_status == 429
    assert b'stoker_router_rejections_total{model="intent",reason="queue-full"} 1.0' in (
        r.metrics.render()
    )
    backend.gate.set()
    await asyncio.gather(running, *waiting)
    await r.drain(5)


async def test_drain_finishes_queued_work_and_refuses_new() -> None:
    """drain() answers every queued request, then refuses new ones with ShuttingDown."""
    backend = FakeBackend()
    r = Router(
        {"intent": backend},
        FakePreprocessor(),
        configs={"intent": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=50)},
    )
    await r.start()
    backend.gate.clear()
    first = asyncio.ensure_future(r.intent("running"))
    await asyncio.to_thread(backend.entered.acquire, True, 5)
    queued = [asyncio.ensure_future(r.intent(f"queued {i}")) for i in range(5)]
    await wait_until(lambda: r.queued() == 5)
    draining = asyncio.ensure_future(r.drain(5))
    await wait_until(lambda: not r.ready)
    with pytest.raises(ShuttingDown) as caught:
        await r.intent("too late")
    assert caught.value.http_status == 503
    backend.gate.set()
    assert await draining is True
    results = await asyncio.gather(first, *queued)
    assert len(results) == 6


async def test_backend_failure_fails_the_batch_and_router_goes_on(
    router: Router, intent_backend: FakeBackend
) -> None:
    """A backend error fails that batch's requests with ModelFailed; later requests succeed."""
    backend = intent_backend
    backend.fail_with = RuntimeError("device lost")
    with pytest.raises(ModelFailed, match="device lost"):
        await router.intent("boom")
    backend.fail_with = None
    assert (await router.intent("fine")).intent in backend.labels


async def test_cancelled_caller_is_skipped(router: Router, intent_backend: FakeBackend) -> None:
    """A caller that gave up is dropped from its batch; the others still get answers."""
    backend = intent_backend
    backend.gate.clear()
    blocker = asyncio.ensure_future(router.intent("hold"))
    assert await asyncio.to_thread(backend.entered.acquire, True, 30), "first batch started"
    gone = asyncio.ensure_future(router.intent("abandoned"))
    kept = asyncio.ensure_future(router.intent("kept"))
    await wait_until(lambda: router.queued() == 2)
    gone.cancel()
    backend.runs.clear()
    backend.gate.set()
    await asyncio.wait_for(blocker, 30)
    assert (await asyncio.wait_for(kept, 30)).intent in backend.labels
    assert backend.runs[-1][2] == 1, "only the caller still waiting was run"


class BrokenClock(FakeClock):
    """A clock that raises once armed, to make the batching loop itself fail."""

    armed = False

    def monotonic(self) -> float:
        if self.armed:
            raise RuntimeError("clock source failed")
        return super().monotonic()


async def test_dead_loop_fails_every_waiter() -> None:
    """If the batching loop dies, queued callers get an error instead of hanging."""
    clock = BrokenClock()
    r = Router(
        {"intent": FakeBackend()},
        FakePreprocessor(),
        configs={"intent": BatchingConfig((1, 2), (8, 16, 32), max_queue_delay_ms=20)},
        clock=clock,
    )
    await r.start()
    waiter = asyncio.ensure_future(r.intent("stuck"))
    await wait_until(lambda: r.queued() == 1)
    clock.armed = True  # the loop's next wake-up (its queue delay) hits the failure
    with pytest.raises(ShuttingDown, match="router loop died"):
        await asyncio.wait_for(waiter, 5)
    assert not r.ready
    assert not r.alive


class ThreadRecordingBackend(FakeBackend):
    """The fake model, noting which thread ran each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self.threads.append(threading.get_ident())
        return super().run(batch)


async def test_idle_router_runs_a_realtime_batch_on_the_loop_thread() -> None:
    """With run_on_loop_when_idle, a query that finds nothing queued or running is run on
    the event loop's thread (no hand-off); its timing stamps follow the request's order."""
    backend = ThreadRecordingBackend()
    r = Router(
        {"intent": backend},
        FakePreprocessor(),
        configs={"intent": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=50)},
        run_on_loop_when_idle=True,
    )
    await r.start()
    try:
        timing = RequestTiming(received=stamp(), handled=stamp())
        result = await asyncio.wait_for(r.intent("red running shoes", timing=timing), 5)
        assert result.intent in backend.labels
        assert backend.threads == [threading.get_ident()]
        stamps = [
            timing.handled, timing.tokenized, timing.formed, timing.run_started,
            timing.run_ended, timing.delivered,
        ]  # fmt: skip
        assert all(s > 0 for s in stamps)
        assert stamps == sorted(stamps)
    finally:
        await r.drain(5)


async def test_busy_router_still_runs_batches_on_worker_threads() -> None:
    """Requests that arrive while a batch runs are batched on a worker thread, even with
    run_on_loop_when_idle: under load the loop stays free for HTTP and tokenizing."""
    backend, dup = ThreadRecordingBackend(), duplicate_backend()
    r = Router(
        {"intent": backend, "duplicate": dup},
        FakePreprocessor(),
        configs={"intent": BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=1)},
        run_on_loop_when_idle=True,
    )
    await r.start()
    try:
        dup.gate.clear()
        # Bulk work is never run on the loop: it holds the only worker meanwhile.
        bulk = asyncio.ensure_future(r.duplicates([("a b", "c d")]))
        assert await asyncio.to_thread(dup.entered.acquire, True, 30), "bulk batch started"
        waiting = [asyncio.ensure_future(r.intent(q)) for q in QUERIES[:3]]
        await wait_until(lambda: r.queued() == 3)
        dup.gate.set()
        await asyncio.wait_for(asyncio.gather(bulk, *waiting), 10)
        assert backend.threads, "the intent batch ran"
        assert threading.get_ident() not in backend.threads
    finally:
        await r.drain(5)


async def test_workers_are_used_by_default() -> None:
    """Without the option every batch runs on a worker thread, idle or not."""
    backend = ThreadRecordingBackend()
    r = Router({"intent": backend}, FakePreprocessor())
    await r.start()
    try:
        await asyncio.wait_for(r.intent("laptop"), 5)
        assert backend.threads
        assert threading.get_ident() not in backend.threads
    finally:
        await r.drain(5)


async def test_a_reply_already_set_keeps_the_next_query_off_the_loop() -> None:
    """While another caller has its answer but has not resumed yet (here: a deadline just
    failed it), a lone query goes to a worker, so that caller never waits behind a run."""
    clock = FakeClock()
    backend = ThreadRecordingBackend()
    config = BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=50, idle_dispatch=False)
    r = Router(
        {"intent": backend},
        FakePreprocessor(),
        configs={"intent": config},
        clock=clock,
        run_on_loop_when_idle=True,
    )
    await r.start()
    try:
        doomed = asyncio.ensure_future(r.intent("too late", timeout_ms=1))
        lone = asyncio.ensure_future(r.intent("laptop"))
        await wait_until(lambda: r.queued() == 2)
        # One turn of the batcher fails the first (deadline) and runs the second alone.
        clock.advance(0.06)
        with pytest.raises(DeadlineExceeded):
            await asyncio.wait_for(doomed, 5)
        assert (await asyncio.wait_for(lone, 5)).intent in backend.labels
        assert backend.threads
        assert threading.get_ident() not in backend.threads
    finally:
        await r.drain(5)
