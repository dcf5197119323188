"""Pure pieces of the lifecycle benchmark: percentiles, latency summaries, virtual time.

No I/O here, so the numbers the benchmark prints can be checked by unit tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from stoker.core.job import JobStatus, Transition

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: a value that was measured.

    Nearest rank never interpolates, so "p99 under 100 ms" means at least 99% of the
    samples really were at or under the printed figure.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarize_ms(seconds: Sequence[float]) -> LatencySummary:
    """p50 / p99 / max / mean in milliseconds of latencies given in seconds."""
    if not seconds:
        raise ValueError("no latencies to summarize")
    return LatencySummary(
        count=len(seconds),
        p50_ms=percentile(seconds, 50) * 1000,
        p99_ms=percentile(seconds, 99) * 1000,
        max_ms=max(seconds) * 1000,
        mean_ms=sum(seconds) / len(seconds) * 1000,
    )


@dataclass(frozen=True)
class JobTimes:
    """When one job entered the states the benchmark measures (None: never did)."""

    new_at: datetime | None
    launched_at: datetime | None
    ended_at: datetime | None
    last_status: JobStatus | None = None

    @property
    def submit_to_launch_s(self) -> float | None:
        if self.new_at is None or self.launched_at is None:
            return None
        return (self.launched_at - self.new_at).total_seconds()


def job_times(history: Sequence[Transition]) -> JobTimes:
    """New at, first Launched at, and terminal at, from one job's history lines."""
    new_at = launched_at = ended_at = None
    last = history[-1].to_status if history else None
    for line in history:
        if line.to_status is JobStatus.NEW and new_at is None:
            new_at = line.at
        elif line.to_status is JobStatus.LAUNCHED and launched_at is None:
            launched_at = line.at
        elif line.to_status.terminal:
            ended_at = line.at
    return JobTimes(new_at, launched_at, ended_at, last)


def stage_percentiles_ms(times: Sequence[JobTimes]) -> dict[str, tuple[float, float]]:
    """(p50, p99) of the time in each stage: New -> Launched (intake, admission,
    CreateTrainingJob and its write; a Launching line in between only marks a retried
    create, ADR 0010), Launched -> terminal (the monitor). A stage no job went through is
    left out."""
    stages = {
        "New->Launched": [(t.new_at, t.launched_at) for t in times],
        "Launched->end": [(t.launched_at, t.ended_at) for t in times],
    }
    out: dict[str, tuple[float, float]] = {}
    for name, spans in stages.items():
        ms = [(b - a).total_seconds() * 1000 for a, b in spans if a and b]
        if ms:
            out[name] = (percentile(ms, 50), percentile(ms, 99))
    return out


@dataclass(frozen=True)
class Spread:
    """Median, lowest and highest of one figure over repeated runs."""

    median: float
    low: float
    high: float


def spread(values: Sequence[float]) -> Spread:
    """The median by nearest rank (of an even count the lower middle: a measured value, as
    every percentile here) and the range."""
    if not values:
        raise ValueError("spread of no values")
    return Spread(percentile(values, 50), min(values), max(values))


def end_to_end_rate(times: Sequence[JobTimes]) -> tuple[float, float]:
    """(seconds, jobs/s) from the first New to the last terminal state of `times`."""
    starts = [t.new_at for t in times if t.new_at is not None]
    ends = [t.ended_at for t in times if t.ended_at is not None]
    if not starts or not ends:
        raise ValueError("no job both started and ended")
    seconds = (max(ends) - min(starts)).total_seconds()
    return seconds, (len(ends) / seconds if seconds > 0 else math.inf)


MIN_STEP_S = 1e-6
SETTLE_YIELDS = 50
"""Event-loop turns given to runnable tasks before time moves: enough for in-process work
(store, bus and simulator calls never wait on real I/O) to reach its next sleep."""


class VirtualClock:
    """Simulated time shared by the SageMaker simulator and the pollers under test.

    Sleeping tasks wait for the clock, and `run` moves the clock to the earliest wake-up
    once every task is asleep, as a discrete-event simulation does: concurrent sleepers wait
    side by side (not one after the other), and ten simulated minutes of polling at 2
    requests per second run in seconds. Everything driven by it must be in-process: a task
    waiting on real I/O is not seen as busy.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    @property
    def elapsed_s(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (got {seconds} s)")
        self._elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        # At least a microsecond: a token bucket asking for 1e-15 s more would otherwise be
        # absorbed by float rounding and ask again forever.
        wake_at = self._elapsed + max(MIN_STEP_S, seconds)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake_at, next(self._seq), waiter))
        await waiter

    async def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` to its end, moving time forward whenever every task sleeps."""
        task = asyncio.ensure_future(main)
        try:
            while not task.done():
                for _ in range(SETTLE_YIELDS):
                    await asyncio.sleep(0)
                if task.done():
                    break
                if not self._sleepers:
                    raise RuntimeError("nothing sleeps on the virtual clock and nothing runs")
                wake_at = self._sleepers[0][0]
                self._elapsed = max(self._elapsed, wake_at)
                while self._sleepers and self._sleepers[0][0] <= self._elapsed:
                    _, _, waiter = heapq.heappop(self._sleepers)
                    if not waiter.done():
                        waiter.set_result(None)
            return task.result()
        finally:
            task.cancel()
