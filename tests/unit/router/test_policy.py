"""The batching policy, driven with plain numbers for `now` (no loop, no clock, no sleep)."""

from __future__ import annotations

import pytest

from stoker.inference.router.errors import QueueFull, ShuttingDown, UnknownModel
from stoker.inference.router.policy import BatchingConfig, BatchPolicy, Priority

CFG = BatchingConfig(
    batch_sizes=(1, 2, 4, 8),
    seq_buckets=(8, 16, 32),
    max_batch_size=8,
    max_queue_delay_ms=5.0,
    queue_capacity=10,
    timeout_ms=100.0,
)


def policy(**models: BatchingConfig) -> BatchPolicy[str]:
    return BatchPolicy(models or {"intent": CFG})


def offer(
    p: BatchPolicy[str],
    item: str,
    now: float,
    *,
    model: str = "intent",
    length: int = 5,
    priority: Priority = Priority.REALTIME,
    timeout_ms: float | None = None,
) -> None:
    p.offer(item, model=model, length=length, priority=priority, now=now, timeout_ms=timeout_ms)


def test_full_batch_forms_at_once_without_waiting_for_the_delay() -> None:
    """max_batch_size requests of one bucket make a batch immediately."""
    p = policy()
    for i in range(8):
        offer(p, f"r{i}", now=0.0)
    decision = p.poll(0.0, free_workers=1)
    assert decision.batch is not None
    assert [e.item for e in decision.batch.entries] == [f"r{i}" for i in range(8)]
    assert decision.batch.batch_size == 8
    assert p.queued() == 0


def test_partial_batch_waits_for_the_queue_delay_then_goes() -> None:
    """Fewer requests than a full batch wait until the oldest has waited max_queue_delay."""
    p = policy()
    offer(p, "a", now=0.0)
    offer(p, "b", now=0.001)
    offer(p, "c", now=0.002)
    early = p.poll(0.004, free_workers=1)
    assert early.batch is None
    assert early.wake_at == pytest.approx(0.005)
    due = p.poll(0.005, free_workers=1)
    assert due.batch is not None
    assert [e.item for e in due.batch.entries] == ["a", "b", "c"]
    assert due.batch.batch_size == 4, "3 requests are padded up to the allowed size 4"


def test_more_than_max_batch_size_splits_into_fifo_batches() -> None:
    """Eleven waiting requests give a batch of 8 then one of 3 padded to 4, oldest first."""
    p = policy(intent=BatchingConfig(batch_sizes=(1, 2, 4, 8), seq_buckets=(8,)))
    for i in range(11):
        offer(p, f"r{i}", now=0.0)
    first = p.poll(0.0, free_workers=2).batch
    assert first is not None
    assert [e.item for e in first.entries] == [f"r{i}" for i in range(8)]
    assert p.poll(0.001, free_workers=1).batch is None
    second = p.poll(0.005, free_workers=1).batch
    assert second is not None
    assert [e.item for e in second.entries] == ["r8", "r9", "r10"]
    assert second.batch_size == 4


def test_requests_are_grouped_by_sequence_bucket() -> None:
    """Lengths pick the smallest bucket that fits; a batch never mixes buckets."""
    p = policy()
    offer(p, "short", now=0.0, length=3)
    offer(p, "medium", now=0.0, length=9)
    offer(p, "exact16", now=0.0, length=16)
    offer(p, "long", now=0.0, length=32)
    seen = {}
    while (batch := p.poll(0.05, free_workers=1).batch) is not None:
        seen[batch.bucket] = sorted(e.item for e in batch.entries)
    assert seen == {8: ["short"], 16: ["exact16", "medium"], 32: ["long"]}


def test_bucket_and_padded_size_choice() -> None:
    """bucket_for and padded_size round up to the next static shape and refuse beyond the last."""
    assert [CFG.bucket_for(n) for n in (1, 8, 9, 16, 17, 32)] == [8, 8, 16, 16, 32, 32]
    assert [CFG.padded_size(n) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError, match="exceeds the largest bucket 32"):
        CFG.bucket_for(33)
    with pytest.raises(ValueError, match="exceed the largest batch size 8"):
        CFG.padded_size(9)


def test_expired_requests_are_returned_and_never_batched() -> None:
    """A request past its deadline comes back as expired and is not part of any batch."""
    p = policy()
    offer(p, "old", now=0.0, timeout_ms=10)
    offer(p, "fresh", now=0.009, timeout_ms=100)
    decision = p.poll(0.014, free_workers=1)
    assert [e.item for e in decision.expired] == ["old"]
    assert decision.batch is not None
    assert [e.item for e in decision.batch.entries] == ["fresh"]


def test_expiry_happens_even_when_no_worker_is_free() -> None:
    """Deadlines are enforced while every worker is busy, and wake_at points at the next one."""
    p = policy()
    offer(p, "a", now=0.0, timeout_ms=10)
    offer(p, "b", now=0.0, timeout_ms=20)
    first = p.poll(0.001, free_workers=0)
    assert first.batch is None
    assert first.expired == []
    assert first.wake_at == pytest.approx(0.010), "busy workers: only the deadline matters"
    later = p.poll(0.015, free_workers=0)
    assert [e.item for e in later.expired] == ["a"]
    assert later.wake_at == pytest.approx(0.020)


def test_realtime_goes_before_bulk_even_when_bulk_is_older() -> None:
    """With both ready, the real-time batch is formed first although bulk waited longer."""
    dup = BatchingConfig(batch_sizes=(1, 2, 4, 8), seq_buckets=(32,), max_queue_delay_ms=5)
    p = policy(intent=CFG, duplicate=dup)
    offer(p, "bulk", now=0.0, model="duplicate", priority=Priority.BULK)
    offer(p, "rt", now=0.004, model="intent", priority=Priority.REALTIME)
    # Both are ready at 10 ms; bulk has waited longer, real time still wins.
    first = p.poll(0.010, free_workers=1).batch
    assert first is not None
    assert (first.model, first.priority) == ("intent", Priority.REALTIME)
    second = p.poll(0.010, free_workers=1).batch
    assert second is not None
    assert (second.model, [e.item for e in second.entries]) == ("duplicate", ["bulk"])


def test_bulk_runs_when_realtime_is_not_ready() -> None:
    """Priority only orders ready batches: a ready bulk batch is not held for unready intent."""
    dup = BatchingConfig(batch_sizes=(1, 2), seq_buckets=(32,), max_queue_delay_ms=1)
    p = policy(intent=CFG, duplicate=dup)
    offer(p, "bulk", now=0.0, model="duplicate", priority=Priority.BULK)
    offer(p, "rt", now=0.0005, model="intent")
    batch = p.poll(0.001, free_workers=1).batch
    assert batch is not None
    assert batch.model == "duplicate"


def test_full_queue_rejects_at_once() -> None:
    """Over queue_capacity a request is refused with QueueFull (429), not queued."""
    p = policy()
    for i in range(10):
        offer(p, f"r{i}", now=0.0, length=20)
    with pytest.raises(QueueFull) as caught:
        offer(p, "one-too-many", now=0.0)
    assert caught.value.http_status == 429
    assert p.queued("intent") == 10
    p.poll(0.0, free_workers=1)
    offer(p, "room-again", now=0.0)


def test_draining_refuses_new_requests_and_flushes_queued_ones() -> None:
    """After begin_drain, offers raise ShuttingDown (503) and partial batches go at once."""
    p = policy()
    offer(p, "a", now=0.0)
    p.begin_drain()
    with pytest.raises(ShuttingDown) as caught:
        offer(p, "late", now=0.0)
    assert caught.value.http_status == 503
    batch = p.poll(0.0, free_workers=1).batch
    assert batch is not None
    assert [e.item for e in batch.entries] == ["a"]


def test_drop_all_empties_every_queue() -> None:
    """drop_all hands back every queued request so a dead loop can fail their callers."""
    p = policy()
    offer(p, "a", now=0.0, length=3)
    offer(p, "b", now=0.0, length=20)
    assert sorted(e.item for e in p.drop_all()) == ["a", "b"]
    assert p.queued() == 0
    decision = p.poll(10.0, free_workers=1)
    assert (decision.batch, decision.expired, decision.wake_at) == (None, [], None)


def test_unknown_model_is_refused() -> None:
    """A request for a model that is not configured raises UnknownModel."""
    with pytest.raises(UnknownModel):
        offer(policy(), "x", now=0.0, model="nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_sizes": (4, 2)}, "batch_sizes must be positive, unique and ascending"),
        ({"seq_buckets": ()}, "seq_buckets must be positive"),
        ({"max_batch_size": 16}, "max_batch_size must be in 1..8"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms must be >= 0, got -1"),
        ({"queue_capacity": 0}, "queue_capacity must be >= 1, got 0"),
        ({"timeout_ms": 0}, "timeout_ms must be > 0, got 0"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs: dict[str, object], message: str) -> None:
    """Invalid batching settings fail at construction with the offending value in the message."""
    base: dict[str, object] = {"batch_sizes": (1, 2, 4, 8), "seq_buckets": (8, 16)}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BatchingConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_max_batch_size_defaults_to_the_largest_allowed_size() -> None:
    """Without max_batch_size the policy fills batches up to the largest compiled size."""
    assert BatchingConfig(batch_sizes=(1, 4, 16), seq_buckets=(8,)).max_batch_size == 16


def test_deadline_heap_stays_bounded_under_sustained_load() -> None:
    """Batched requests do not pile up in the deadline index as traffic flows."""
    p = policy()
    for step in range(2000):
        offer(p, f"r{step}", now=step * 0.001, timeout_ms=1000)
        p.poll(step * 0.001, free_workers=1)
    assert p.tracked_deadlines < 300


def test_idle_workers_take_a_request_at_once() -> None:
    """With no batch running, a partial batch goes without waiting for the queue delay."""
    p = policy()
    offer(p, "a", now=0.0)
    decision = p.poll(0.0, free_workers=1, busy_workers=0)
    assert decision.batch is not None
    assert [e.item for e in decision.batch.entries] == ["a"]


def test_queue_delay_still_holds_while_another_batch_runs() -> None:
    """A free worker next to a busy one waits for the batch to fill, as before."""
    p = policy()
    offer(p, "a", now=0.0)
    early = p.poll(0.001, free_workers=1, busy_workers=1)
    assert early.batch is None
    assert early.wake_at == pytest.approx(0.005)
    due = p.poll(0.005, free_workers=1, busy_workers=1)
    assert due.batch is not None


def test_idle_dispatch_can_be_turned_off_and_needs_the_busy_count() -> None:
    """Without idle_dispatch, or when the caller does not say how many batches run, a
    request waits for its queue delay."""
    off = policy(intent=BatchingConfig((1, 2), (8,), max_queue_delay_ms=5.0, idle_dispatch=False))
    offer(off, "a", now=0.0)
    assert off.poll(0.0, free_workers=1, busy_workers=0).batch is None
    unknown = policy()
    offer(unknown, "a", now=0.0)
    assert unknown.poll(0.0, free_workers=1).batch is None
