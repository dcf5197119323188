"""The asyncio loop around the batching policy: waiting, dispatch, replies.

The loop only waits (for a new request, a freed worker or the policy's `wake_at`) and
dispatches; every decision is the policy's. Model runs go to worker threads, one per
replica, through `loop.run_in_executor`, so the event loop never blocks on a model under
load. With `run_on_loop_when_idle`, a lone real-time request that finds nothing else
queued or running runs on the loop's own thread: at low load every thread wake-up is a chance for
the scheduler to be late, and this path has none between the request and the model.
Replies are set only on futures that are not done (a caller that gave up is skipped),
and if the loop itself dies every waiting caller is failed instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from stoker.core.clock import Clock, SystemClock
from stoker.inference.router.errors import (
    DeadlineExceeded,
    ModelFailed,
    RouterError,
    ShuttingDown,
)
from stoker.inference.router.metrics import RouterMetrics
from stoker.inference.router.policy import Batch, BatchPolicy, Pending, Priority
from stoker.inference.router.timing import RequestTiming
from stoker.inference.router.timing import now as stamp
from stoker.ports.inference import ModelBackend, Preprocessor, TokenizedInput

log = structlog.get_logger("stoker.router")


@dataclass(slots=True)
class Job:
    """One request's payload and the future its caller awaits."""

    tokens: TokenizedInput
    future: asyncio.Future[list[float]]
    timing: RequestTiming | None = None
    """Filled as the request moves (batch formed, model run, reply), when given."""


def run_padded(
    backend: ModelBackend,
    preprocessor: Preprocessor,
    inputs: Sequence[TokenizedInput],
    *,
    batch_size: int,
    seq_len: int,
) -> tuple[list[list[float]], float]:
    """Pad and run one batch (on a worker thread). Returns the rows and the run's seconds."""
    padded = preprocessor.pad(inputs, batch_size=batch_size, seq_len=seq_len)
    started = time.perf_counter()
    rows = backend.run(padded)
    return rows, time.perf_counter() - started


def run_stamped(
    backend: ModelBackend,
    preprocessor: Preprocessor,
    inputs: Sequence[TokenizedInput],
    *,
    batch_size: int,
    seq_len: int,
) -> tuple[list[list[float]], float, float]:
    """As `run_padded`, with the run's start and end stamps (`timing.now`) for the run's seconds."""
    padded = preprocessor.pad(inputs, batch_size=batch_size, seq_len=seq_len)
    started = stamp()
    rows = backend.run(padded)
    return rows, started, stamp()


class Batcher:
    """Feeds every model's queue through one pool of `workers` threads."""

    def __init__(
        self,
        backends: Mapping[str, ModelBackend],
        preprocessor: Preprocessor,
        policy: BatchPolicy[Job],
        *,
        workers: int,
        metrics: RouterMetrics,
        clock: Clock | None = None,
        run_on_loop_when_idle: bool = False,
        callers_waiting: Callable[[], int] | None = None,
    ) -> None:
        """`run_on_loop_when_idle`: a batch of one real-time request, formed when no other
        request is queued and no batch is running, runs on the event loop's thread instead
        of a worker. `callers_waiting`, when given, counts the callers between their request
        and their reply (the router's); a batch runs on the loop only when its own caller
        is the only one, so a reply already set is never held up behind someone else's
        run."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._backends = dict(backends)
        self._preprocessor = preprocessor
        self._policy = policy
        self._workers = workers
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._run_on_loop_when_idle = run_on_loop_when_idle
        self._callers_waiting = callers_waiting
        self._inflight = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def inflight(self) -> int:
        return self._inflight

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("batcher already started")
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="stoker-model")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stoker-batcher")
        self._task.add_done_callback(self._on_loop_done)

    def submit(
        self,
        model: str,
        tokens: TokenizedInput,
        *,
        priority: Priority,
        timeout_ms: float | None = None,
        timing: RequestTiming | None = None,
    ) -> asyncio.Future[list[float]]:
        """Queue one request; raises QueueFull or ShuttingDown at once when it cannot wait.

        `timing`, when given, gets the stamps of the batch formed, the model run and the
        reply delivered."""
        if not self.running:
            raise ShuttingDown("router is not running")
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        try:
            self._policy.offer(
                Job(tokens, future, timing),
                model=model,
                length=tokens.length,
                priority=priority,
                now=self._clock.monotonic(),
                timeout_ms=timeout_ms,
            )
        except RouterError as exc:
            self._metrics.rejected(model, exc.reason)
            raise
        self._metrics.queue_depth(model, self._policy.queued(model))
        self._wakeup.set()
        return future

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests, finish every queued and running one; True if done in time."""
        self._policy.begin_drain()
        self._wakeup.set()
        if self._task is None:
            return True
        try:
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                log.warning(
                    "drain timed out", queued=self._policy.queued(), inflight=self._inflight
                )
                self._task.cancel()
                return False
            return True
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        policy = self._policy
        while True:
            self._wakeup.clear()
            wake_at = self._pump()
            if policy.draining and policy.queued() == 0 and self._inflight == 0:
                return
            timeout = None
            if wake_at is not None:
                timeout = max(0.0, wake_at - self._clock.monotonic())
                if timeout == 0.0:
                    continue
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _pump(self) -> float | None:
        """Fail expired requests, start every batch a free worker can take; next wake time."""
        while True:
            now = self._clock.monotonic()
            decision = self._policy.poll(
                now, free_workers=self._workers - self._inflight, busy_workers=self._inflight
            )
            for entry in decision.expired:
                self._expire(entry, now)
            if decision.batch is None:
                return decision.wake_at
            self._dispatch(decision.batch, now)

    def _expire(self, entry: Pending[Job], now: float) -> None:
        self._metrics.rejected(entry.model, DeadlineExceeded.reason)
        if not entry.item.future.done():
            entry.item.future.set_exception(DeadlineExceeded(entry.model, now - entry.arrival))

    def _dispatch(self, batch: Batch[Job], formed_at: float) -> None:
        # Callers that gave up (cancelled) are dropped before the run, as after it.
        live = [entry for entry in batch.entries if not entry.item.future.done()]
        if not live:
            return
        size = self._policy.config(batch.model).padded_size(len(live))
        formed = stamp()
        for entry in live:
            self._metrics.queued_for(batch.model, batch.priority, formed_at - entry.arrival)
            if entry.item.timing is not None:
                entry.item.timing.formed = formed
        self._metrics.queue_depth(batch.model, self._policy.queued(batch.model))
        if (
            self._run_on_loop_when_idle
            and len(live) == 1
            and batch.priority is Priority.REALTIME
            and self._inflight == 0
            and self._policy.queued() == 0
            and (self._callers_waiting is None or self._callers_waiting() <= 1)
        ):
            # A lone request with nothing else waiting or running: a worker thread would
            # only add two thread wake-ups (there and back), and nothing needs the loop
            # meanwhile. Requests that arrive during the run are read right after it and
            # batch together; a batch of several (load) goes to a worker as before, so
            # the loop keeps reading and tokenizing while the model runs.
            self._run_here(batch, live, size)
            return
        backend = self._backends[batch.model]
        inputs = [entry.item.tokens for entry in live]
        # Submitted to the worker thread here, synchronously, so the model starts now and
        # not after every callback already queued on the loop.
        running = asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: run_stamped(
                backend, self._preprocessor, inputs, batch_size=size, seq_len=batch.bucket
            ),
        )
        self._inflight += 1
        task = asyncio.get_running_loop().create_task(self._deliver(batch, live, size, running))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    async def _deliver(
        self,
        batch: Batch[Job],
        live: list[Pending[Job]],
        size: int,
        running: asyncio.Future[tuple[list[list[float]], float, float]],
    ) -> None:
        try:
            rows, run_started, run_ended = await running
        except Exception as exc:
            self._release()
            self._fail(batch, live, exc)
            return
        except BaseException:
            self._release()
            raise
        self._release()
        self._complete(batch, live, size, rows, run_started=run_started, run_ended=run_ended)

    def _run_here(self, batch: Batch[Job], live: list[Pending[Job]], size: int) -> None:
        """Run the batch on the loop's own thread: no hand-off to a worker and back."""
        inputs = [entry.item.tokens for entry in live]
        backend = self._backends[batch.model]
        try:
            rows, run_started, run_ended = run_stamped(
                backend, self._preprocessor, inputs, batch_size=size, seq_len=batch.bucket
            )
        except Exception as exc:
            self._fail(batch, live, exc)
            return
        self._complete(batch, live, size, rows, run_started=run_started, run_ended=run_ended)

    def _fail(self, batch: Batch[Job], live: list[Pending[Job]], exc: Exception) -> None:
        log.error("batch failed", model=batch.model, bucket=batch.bucket, error=repr(exc))
        failure = ModelFailed(batch.model, repr(exc))
        for entry in live:
            if not entry.item.future.done():
                entry.item.future.set_exception(failure)

    def _complete(
        self,
        batch: Batch[Job],
        live: list[Pending[Job]],
        size: int,
        rows: list[list[float]],
        *,
        run_started: float,
        run_ended: float,
    ) -> None:
        if len(rows) != len(live):
            self._fail(
                batch, live, ValueError(f"backend returned {len(rows)} rows for {len(live)} inputs")
            )
            return
        self._metrics.batch_ran(batch.model, batch.bucket, size, len(live), run_ended - run_started)
        done_at = self._clock.monotonic()
        delivered = stamp()
        for entry, row in zip(live, rows, strict=True):
            timing = entry.item.timing
            if timing is not None:
                timing.run_started, timing.run_ended = run_started, run_ended
                timing.delivered = delivered
            if not entry.item.future.done():
                entry.item.future.set_result(row)
            self._metrics.served(batch.model, batch.bucket, done_at - entry.arrival)

    def _release(self) -> None:
        # The loop is woken before any reply is delivered: callbacks run in order, so the
        # next batch is on the worker before the callers of this one resume.
        self._inflight -= 1
        self._wakeup.set()

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        error = ShuttingDown("router loop was cancelled") if task.cancelled() else task.exception()
        dropped = self._policy.drop_all()
        if error is not None:
            self.failure = error
            if not isinstance(error, ShuttingDown):
                log.error("batcher loop died", error=repr(error), failed_requests=len(dropped))
        for entry in dropped:
            if not entry.item.future.done():
                entry.item.future.set_exception(
                    error if isinstance(error, RouterError) else ShuttingDown("router loop died")
                )
