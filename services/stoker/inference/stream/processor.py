"""Streaming duplicate detection: fetch pairs, score them in batches, publish, commit.

Delivery rules:
- a batch's positions are committed only after its scores (and dead letters) were
  acknowledged by the broker (`publish_many` returned): a crash at any point replays
  the uncommitted pairs, so every pair id gets a score at least once;
- each score carries its pair id (and is keyed by it), so downstream de-duplicates a
  replay by pair id;
- a record that is not a valid pair goes to the dead-letter topic and the stream goes on;
- an overloaded router (queue full, retriable) is waited out with backoff, not skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson
import structlog
import tenacity
from pydantic import ValidationError

from stoker.bus.consumer import dead_letter_event
from stoker.core import topics
from stoker.core.clock import Clock, SystemClock
from stoker.core.events import CloudEvent
from stoker.core.retry import RetryPolicy
from stoker.inference.pairs import DuplicatePair, DuplicateScore
from stoker.inference.router.errors import InvalidInput, RouterError
from stoker.inference.router.policy import Priority
from stoker.inference.router.router import DUPLICATE_LABEL, Router
from stoker.ports.bus import BusRecord, EventBus, RecordSource, TopicPartition
from stoker.ports.inference import TokenizedInput

log = structlog.get_logger("stoker.stream.duplicates")

MODEL = "duplicate"


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Where the stream reads and writes, and how much it takes at once.

    group: consumer group of the scorers (default "stoker-duplicates").
    max_batch: records fetched and scored together (default 512).
    poll_timeout_s: longest wait for records before checking for shutdown (0.5 s).
    timeout_ms: deadline of a pair in the router queue; bulk work may wait (60 s).
    overload_backoff_s: first wait after the router refused a batch, doubled up to 2 s
        (see `overload_retry`).
    pipeline_depth: fetched batches in flight at once (default 2: one scoring, one queued).
    """

    group: str = "stoker-duplicates"
    pairs_topic: str = topics.DUPLICATE_PAIRS
    scores_topic: str = topics.DUPLICATE_SCORES
    dead_letter_topic: str = topics.DEAD_LETTER
    max_batch: int = 512
    poll_timeout_s: float = 0.5
    timeout_ms: float = 60_000.0
    overload_backoff_s: float = 0.05
    pipeline_depth: int = 2

    def __post_init__(self) -> None:
        if self.overload_backoff_s < 0:
            raise ValueError(f"overload_backoff_s must be >= 0, got {self.overload_backoff_s}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.poll_timeout_s <= 0:
            raise ValueError(f"poll_timeout_s must be > 0, got {self.poll_timeout_s}")
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {self.timeout_ms}")
        if self.pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be >= 1, got {self.pipeline_depth}")

    def overload_retry(self) -> RetryPolicy:
        """How a batch the router refused (queue full, draining, deadline missed under load)
        is queued again: waits doubling from `overload_backoff_s` up to 2 s, for about half
        an hour. A router refusing longer than that is down, not busy: the stream stops with
        the error and its uncommitted pairs go to another member of the group."""
        return RetryPolicy(
            initial_delay_s=self.overload_backoff_s,
            multiplier=2,
            max_delay_s=max(2.0, self.overload_backoff_s),
            jitter=0,
            max_attempts=1000,
        )


ErrorKind = Literal["decode", "schema", "handler"]


@dataclass(frozen=True, slots=True)
class _Rejected:
    record: BusRecord
    kind: ErrorKind
    reason: str


@dataclass(slots=True)
class _InFlight:
    """One fetched batch: its records, the valid pairs queued in the router, the rejects."""

    records: Sequence[BusRecord]
    pairs: list[tuple[DuplicatePair, TokenizedInput]] = field(default_factory=list)
    rejected: list[_Rejected] = field(default_factory=list)
    futures: list[asyncio.Future[list[float]]] | None = None

    def cancel(self) -> None:
        for future in self.futures or ():
            future.cancel()


class DuplicateStream:
    """One member of the scorers' consumer group."""

    def __init__(
        self,
        bus: EventBus,
        router: Router,
        config: StreamConfig | None = None,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bus = bus
        self._router = router
        self._config = config or StreamConfig()
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._overload_retry = self._config.overload_retry()
        self._source: RecordSource | None = None
        self._column = router.labels(MODEL).index(DUPLICATE_LABEL)
        capacity = router.config(MODEL).queue_capacity
        if capacity < self._config.max_batch:
            # A batch is queued whole or not at all; a smaller queue could never take it.
            raise ValueError(
                f"the router's {MODEL!r} queue_capacity ({capacity}) must be at least the "
                f"stream's max_batch ({self._config.max_batch})"
            )
        self.scored = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Score batches until `stop` is set; batches in hand are finished and committed.

        Up to `pipeline_depth` batches are in flight: the next one is fetched and queued
        in the router while the previous one's scores are published, so the model does
        not wait for the broker. Batches are finished, published and committed in the
        order they were fetched.
        """
        if self._source is None:
            self._source = self._bus.source(self._config.group, [self._config.pairs_topic])
        pending: deque[_InFlight] = deque()
        try:
            while not (stop.is_set() and not pending):
                if not stop.is_set() and len(pending) < self._config.pipeline_depth:
                    # With a batch in hand, take only what is already there: never hold
                    # finished scores back waiting for new records.
                    timeout = 0.0 if pending else self._config.poll_timeout_s
                    taken = await self._take(timeout)
                    if taken is not None:
                        pending.append(taken)
                        if len(pending) < self._config.pipeline_depth:
                            continue
                if pending:
                    await self._finish(pending.popleft())
        finally:
            for batch in pending:
                batch.cancel()
            await self.close()

    async def close(self) -> None:
        """Leave the group; uncommitted pairs go to another member."""
        if self._source is not None:
            await self._source.close()
            self._source = None

    async def run_once(self) -> int:
        """Fetch, score, publish and commit one batch. Returns the records taken."""
        batch = await self._take(self._config.poll_timeout_s)
        if batch is None:
            return 0
        await self._finish(batch)
        return len(batch.records)

    async def _take(self, timeout_s: float) -> _InFlight | None:
        if self._source is None:
            self._source = self._bus.source(self._config.group, [self._config.pairs_topic])
        records = await self._source.fetch(self._config.max_batch, timeout_s)
        if not records:
            return None
        batch = _InFlight(records)
        for record in records:
            item = self._parse(record)
            if isinstance(item, _Rejected):
                batch.rejected.append(item)
            else:
                batch.pairs.append(item)
        batch.futures = self._try_submit(batch.pairs)
        return batch

    async def _finish(self, batch: _InFlight) -> None:
        assert self._source is not None
        rows = await self._rows(batch) if batch.pairs else []
        now = self._clock.now()
        scores = [
            CloudEvent.wrap(
                DuplicateScore(
                    pair_id=pair.pair_id,
                    score=min(1.0, max(0.0, row[self._column])),
                    truncated=tokens.truncated,
                    model=MODEL,
                ),
                time=now,
            )
            for (pair, tokens), row in zip(batch.pairs, rows, strict=True)
        ]
        if scores:
            await self._bus.publish_many(self._config.scores_topic, scores)
        if batch.rejected:
            letters = [self._letter(r) for r in batch.rejected]
            await self._bus.publish_many(self._config.dead_letter_topic, letters)
            for r in batch.rejected:
                log.warning(
                    "pair dead-lettered",
                    topic=r.record.topic,
                    partition=r.record.partition,
                    offset=r.record.offset,
                    reason=r.reason,
                )
        # Both publishes were acknowledged: now, and only now, the positions move.
        positions: dict[TopicPartition, int] = {}
        for record in batch.records:
            tp = (record.topic, record.partition)
            positions[tp] = max(positions.get(tp, 0), record.offset + 1)
        await self._source.commit(positions)
        self.scored += len(scores)
        self.dead_lettered += len(batch.rejected)

    def _submit(
        self, pairs: list[tuple[DuplicatePair, TokenizedInput]]
    ) -> list[asyncio.Future[list[float]]]:
        """Queue every pair in the router, or none of them (the router's error) if it
        refused."""
        futures: list[asyncio.Future[list[float]]] = []
        try:
            for _, tokens in pairs:
                futures.append(
                    self._router.submit(
                        MODEL, tokens, priority=Priority.BULK, timeout_ms=self._config.timeout_ms
                    )
                )
        except RouterError:
            for future in futures:
                future.cancel()
            raise
        return futures

    def _try_submit(
        self, pairs: list[tuple[DuplicatePair, TokenizedInput]]
    ) -> list[asyncio.Future[list[float]]] | None:
        """`_submit`, or None if the router refused for now (`_rows` tries again)."""
        try:
            return self._submit(pairs)
        except RouterError as exc:
            if not exc.retriable:
                raise
            return None

    async def _rows(self, batch: _InFlight) -> list[list[float]]:
        """The batch's scores. Overload or a deadline missed under load is waited out and
        the batch queued again, as `overload_retry` says."""
        async for attempt in self._overload_retry.retrying(
            sleep=self._sleep, before_sleep=_log_refused
        ):
            with attempt:
                futures, batch.futures = batch.futures, None
                if futures is None:
                    futures = self._submit(batch.pairs)
                try:
                    return list(await asyncio.gather(*futures))
                except RouterError:
                    for future in futures:
                        future.cancel()
                    raise
        raise AssertionError("unreachable: retrying() re-raises the last failure")

    def _parse(self, record: BusRecord) -> tuple[DuplicatePair, TokenizedInput] | _Rejected:
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError as exc:
            return _Rejected(record, "decode", f"decode: not JSON: {exc}")
        try:
            pair = DuplicatePair.model_validate(doc)
        except ValidationError as exc:
            return _Rejected(record, "schema", f"schema: {_describe(exc)}")
        try:
            tokens = self._router.encode(MODEL, pair.a.as_text(), pair.b.as_text(), field="a")
        except InvalidInput as exc:
            return _Rejected(record, "schema", f"schema: {exc}")
        return pair, tokens

    def _letter(self, rejected: _Rejected) -> CloudEvent:
        return dead_letter_event(
            rejected.record,
            group=self._config.group,
            kind=rejected.kind,
            reason=rejected.reason,
            attempts=0,
            at=self._clock.now(),
        )


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_scores(records: Sequence[BusRecord]) -> dict[str, float]:
    """pair id -> score from score records; a replayed pair keeps its first score."""
    seen: dict[str, float] = {}
    for record in records:
        data = orjson.loads(record.value)["data"]
        seen.setdefault(data["pair_id"], data["score"])
    return seen


def _log_refused(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.info(
        "router refused the batch; backing off",
        reason=str(error),
        delay_s=round(state.upcoming_sleep, 3),
    )
