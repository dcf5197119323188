"""The dynamic batching policy: pure decisions over queued requests and a given `now`.

No I/O, no asyncio, no clock of its own: the loop around it passes `now` (monotonic
seconds) and does the waiting and the dispatch. That keeps every rule here testable
with plain numbers.

Rules:
- one FIFO queue per (model, priority, sequence bucket): a batch is one model, one
  static shape;
- a queue is ready when it holds `max_batch_size` requests, when its oldest request
  has waited `max_queue_delay_ms`, when no batch is running at all (`idle_dispatch`: an
  idle worker gains nothing by waiting for company at low load, and under load the
  workers are busy and batches fill while they run), or when the router drains;
- among ready queues the lower priority value goes first (real time before bulk),
  then the queue whose oldest request arrived first;
- a batch of n requests is padded up to the smallest allowed batch size >= n;
- a request whose deadline has passed is handed back as expired and never batched;
- each model's queue is bounded: a request over capacity is rejected at once.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

from stoker.inference.router.errors import QueueFull, ShuttingDown, UnknownModel

T = TypeVar("T")


class Priority(IntEnum):
    """Lower runs first when both are ready and compete for the same cores."""

    REALTIME = 0
    BULK = 1


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """How one model's requests are batched.

    batch_sizes: static batch sizes the compiled model accepts, ascending.
    seq_buckets: static sequence lengths the compiled model accepts, ascending.
    max_batch_size: most requests in one batch (default: the largest allowed size).
    max_queue_delay_ms: longest a request waits for others to fill its batch (default 2 ms).
    queue_capacity: most requests waiting for this model; more are rejected (default 1024).
    timeout_ms: default deadline of a request, from its arrival (default 1000 ms).
    idle_dispatch: when no batch is running, a queued request goes at once instead of
        waiting up to `max_queue_delay_ms` (default True).
    """

    batch_sizes: tuple[int, ...]
    seq_buckets: tuple[int, ...]
    max_batch_size: int = 0
    max_queue_delay_ms: float = 2.0
    queue_capacity: int = 1024
    timeout_ms: float = 1000.0
    idle_dispatch: bool = True

    def __post_init__(self) -> None:
        for name, values in (("batch_sizes", self.batch_sizes), ("seq_buckets", self.seq_buckets)):
            if not values or any(v < 1 for v in values) or list(values) != sorted(set(values)):
                raise ValueError(f"{name} must be positive, unique and ascending, got {values}")
        if self.max_batch_size == 0:
            object.__setattr__(self, "max_batch_size", self.batch_sizes[-1])
        if not 1 <= self.max_batch_size <= self.batch_sizes[-1]:
            raise ValueError(
                f"max_batch_size must be in 1..{self.batch_sizes[-1]} (the largest allowed "
                f"batch size), got {self.max_batch_size}"
            )
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if self.queue_capacity < 1:
            raise ValueError(f"queue_capacity must be >= 1, got {self.queue_capacity}")
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {self.timeout_ms}")

    @property
    def max_seq_len(self) -> int:
        return self.seq_buckets[-1]

    def bucket_for(self, length: int) -> int:
        """The smallest bucket that holds `length` tokens (callers truncate to the largest)."""
        for bucket in self.seq_buckets:
            if length <= bucket:
                return bucket
        raise ValueError(f"length {length} exceeds the largest bucket {self.seq_buckets[-1]}")

    def padded_size(self, n: int) -> int:
        """The smallest allowed batch size that holds `n` requests."""
        for size in self.batch_sizes:
            if n <= size:
                return size
        raise ValueError(f"{n} requests exceed the largest batch size {self.batch_sizes[-1]}")


@dataclass(slots=True, eq=False)
class Pending(Generic[T]):
    """One queued request as the policy sees it; `item` is opaque (payload and reply)."""

    model: str
    bucket: int
    priority: Priority
    arrival: float
    deadline: float
    item: T
    queued: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Requests to run together at the static shape (batch_size, bucket)."""

    model: str
    bucket: int
    batch_size: int
    priority: Priority
    entries: list[Pending[T]]


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """What to do now: fail `expired`, run `batch` (if any), then poll again by `wake_at`.

    `wake_at` is None when nothing will become due by itself (only a new request or a
    freed worker can change the picture).
    """

    expired: list[Pending[T]]
    batch: Batch[T] | None
    wake_at: float | None


_QueueKey = tuple[int, str, int]  # (priority, model, bucket)


class BatchPolicy(Generic[T]):
    """Queues of every model served from one pool of workers."""

    def __init__(self, configs: Mapping[str, BatchingConfig]) -> None:
        if not configs:
            raise ValueError("at least one model must be configured")
        self._configs = dict(configs)
        self._queues: dict[_QueueKey, deque[Pending[T]]] = {}
        self._counts = dict.fromkeys(self._configs, 0)
        # Deadlines in a heap with lazy deletion: entries already batched stay until popped.
        self._deadlines: list[tuple[float, int, Pending[T]]] = []
        self._seq = itertools.count()
        self._draining = False

    def config(self, model: str) -> BatchingConfig:
        try:
            return self._configs[model]
        except KeyError:
            raise UnknownModel(model) from None

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._configs)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def tracked_deadlines(self) -> int:
        """Size of the deadline index (live plus already batched entries not yet dropped)."""
        return len(self._deadlines)

    def queued(self, model: str | None = None) -> int:
        """Requests waiting (for one model, or all)."""
        if model is None:
            return sum(self._counts.values())
        return self._counts[model]

    def offer(
        self,
        item: T,
        *,
        model: str,
        length: int,
        priority: Priority,
        now: float,
        timeout_ms: float | None = None,
    ) -> Pending[T]:
        """Queue one request of `length` tokens, or raise QueueFull / ShuttingDown at once."""
        cfg = self.config(model)
        if self._draining:
            raise ShuttingDown()
        if self._counts[model] >= cfg.queue_capacity:
            raise QueueFull(model, cfg.queue_capacity)
        timeout_s = (cfg.timeout_ms if timeout_ms is None else timeout_ms) / 1000.0
        entry = Pending(
            model=model,
            bucket=cfg.bucket_for(length),
            priority=priority,
            arrival=now,
            deadline=now + timeout_s,
            item=item,
        )
        key = (int(priority), model, entry.bucket)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(entry)
        self._counts[model] += 1
        heapq.heappush(self._deadlines, (entry.deadline, next(self._seq), entry))
        return entry

    def begin_drain(self) -> None:
        """Refuse new requests and make every queued one ready at once."""
        self._draining = True

    def drop_all(self) -> list[Pending[T]]:
        """Remove and return every queued request (the loop died; their callers must hear)."""
        dropped = [entry for queue in self._queues.values() for entry in queue]
        for queue in self._queues.values():
            queue.clear()
        for entry in dropped:
            self._take(entry)
        self._deadlines.clear()
        return dropped

    def poll(
        self, now: float, *, free_workers: int, busy_workers: int | None = None
    ) -> Decision[T]:
        """Expire overdue requests and, if a worker is free, form the next batch.

        `busy_workers` is how many batches are running now; with 0, a model whose config
        has `idle_dispatch` does not wait for its batch to fill. None (unknown) keeps
        every request to its queue delay."""
        expired = self._expire(now)
        idle = busy_workers == 0
        batch = self._form(now, idle=idle) if free_workers > 0 else None
        return Decision(expired=expired, batch=batch, wake_at=self._wake_at(free_workers))

    def _expire(self, now: float) -> list[Pending[T]]:
        expired: list[Pending[T]] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if entry.queued:
                self._queues[(int(entry.priority), entry.model, entry.bucket)].remove(entry)
                self._take(entry)
                expired.append(entry)
        return expired

    def _take(self, entry: Pending[T]) -> None:
        entry.queued = False
        self._counts[entry.model] -= 1

    def _ready(self, key: _QueueKey, queue: deque[Pending[T]], now: float, *, idle: bool) -> bool:
        cfg = self._configs[key[1]]
        return (
            self._draining
            or (idle and cfg.idle_dispatch)
            or len(queue) >= cfg.max_batch_size
            or now >= queue[0].arrival + cfg.max_queue_delay_ms / 1000.0
        )

    def _form(self, now: float, *, idle: bool) -> Batch[T] | None:
        best: tuple[int, float, _QueueKey] | None = None
        for key, queue in self._queues.items():
            if queue and self._ready(key, queue, now, idle=idle):
                rank = (key[0], queue[0].arrival, key)
                if best is None or rank[:2] < best[:2]:
                    best = rank
        if best is None:
            return None
        key = best[2]
        queue = self._queues[key]
        cfg = self._configs[key[1]]
        n = min(len(queue), cfg.max_batch_size)
        entries = [queue.popleft() for _ in range(n)]
        for entry in entries:
            self._take(entry)
        self._compact()
        return Batch(
            model=key[1],
            bucket=key[2],
            batch_size=cfg.padded_size(n),
            priority=Priority(key[0]),
            entries=entries,
        )

    def _compact(self) -> None:
        # Batched entries linger in the deadline heap until their deadline; rebuild the heap
        # when they dominate so memory follows the queue length, not the request rate.
        heap = self._deadlines
        live = self.queued()
        if len(heap) > 64 and len(heap) > 4 * live:
            self._deadlines = [item for item in heap if item[2].queued]
            heapq.heapify(self._deadlines)

    def _wake_at(self, free_workers: int) -> float | None:
        candidates: list[float] = []
        heap = self._deadlines
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)  # drop batched entries so the top is the earliest live deadline
        if heap:
            candidates.append(heap[0][0])
        if free_workers > 0:
            for (_, model, _), queue in self._queues.items():
                if queue:
                    delay_s = self._configs[model].max_queue_delay_ms / 1000.0
                    candidates.append(queue[0].arrival + delay_s)
        return min(candidates) if candidates else None
