"""The consumer loop every adapter shares.

Rules, in order of importance:
- a record's position is committed only after its handler succeeded or the record was
  written to the dead-letter topic (at-least-once; nothing is lost);
- records of one partition are handled one at a time, in order (per-key order);
  different partitions run concurrently;
- a record that cannot be decoded or validated goes to the dead-letter topic at once;
- a record the decoder declares not for this consumer (None) is passed over: its position
  is committed with the batch and the handler never sees it;
- a handler error that is not retriable is tried `handler_attempts` times, then the
  record goes to the dead-letter topic with the reason; the consumer carries on;
- a retriable handler error (its class says `retriable = True`, e.g. the store is
  unreachable) is retried with backoff until it clears, because dead-lettering every
  record during an outage would lose the stream's meaning.

Tries of a failing handler follow one `RetryPolicy` (`ConsumerConfig.handler_retry`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import orjson
import structlog
import tenacity

from stoker.core import topics
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import EventRejected
from stoker.core.events import (
    CloudEvent,
    DeadLetter,
    EventData,
    decode_event,
    decode_wanted_event,
)
from stoker.core.redaction import redact, redact_text
from stoker.core.retry import RetryPolicy, is_retriable
from stoker.ports.bus import BusRecord, EventBus, RecordSource, ReportsLag, TopicPartition
from stoker.telemetry import metrics, tracing

T = TypeVar("T")
Handler = Callable[[T, BusRecord], Awaitable[None]]

log = structlog.get_logger("stoker.bus.consumer")


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How a consumer fetches and retries.

    max_batch: records fetched at once (default 500).
    poll_timeout_s: longest wait for new records before checking for shutdown (0.5 s).
    handler_attempts: tries of a handler failing with an error that is not retriable,
        before dead-lettering (default 3).
    handler_backoff_s: first wait between tries, doubled each time (default 0.05 s).
    max_backoff_s: cap on that wait (default 5 s).
    dead_letter_topic: where rejected records go.
    background: nothing waits on these records, so the bus may hold fetches longer to
        gather more at once (`EventBus.source`; default False).
    in_turn: handle a batch's partitions one after another in the consumer's own task,
        instead of a task each (default False). For a handler that hands each record on
        without waiting (the launcher's queues New jobs for its intake), this saves the
        round of the event loop a new task waits before its first step; per-key order
        holds either way, but a handler that waits would hold up every partition.
    """

    max_batch: int = 500
    poll_timeout_s: float = 0.5
    handler_attempts: int = 3
    handler_backoff_s: float = 0.05
    max_backoff_s: float = 5.0
    dead_letter_topic: str = topics.DEAD_LETTER
    background: bool = False
    in_turn: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.handler_attempts < 1:
            raise ValueError(f"handler_attempts must be >= 1, got {self.handler_attempts}")
        if self.poll_timeout_s <= 0:
            raise ValueError(f"poll_timeout_s must be > 0, got {self.poll_timeout_s}")
        if self.handler_backoff_s < 0:
            raise ValueError(f"handler_backoff_s must be >= 0, got {self.handler_backoff_s}")
        if self.max_backoff_s < self.handler_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= handler_backoff_s"
                f" ({self.handler_backoff_s})"
            )

    @property
    def handler_retry(self) -> RetryPolicy:
        """The waits between tries of a failing handler. The policy does not count tries:
        a retriable error is tried until it clears, another `handler_attempts` times."""
        return RetryPolicy(
            initial_delay_s=self.handler_backoff_s,
            multiplier=2,
            max_delay_s=self.max_backoff_s,
            jitter=0,
            max_attempts=sys.maxsize,
        )


BACKGROUND = ConsumerConfig(background=True)
"""The defaults, for a consumer nothing waits on."""
LAUNCH_PATH = ConsumerConfig(in_turn=True)
"""The defaults, for the consumer a New job waits on (the launcher's): an eager member
whose batches are handled in turn, in the consumer's own task."""


class Consumer(Generic[T]):
    """Reads a consumer group's records and hands each decoded one to `handler`."""

    def __init__(
        self,
        bus: EventBus,
        group: str,
        topic_names: Sequence[str],
        handler: Handler[T],
        *,
        decode: Callable[[bytes], T | None],
        config: ConsumerConfig | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        traced: bool = False,
    ) -> None:
        """`traced`: the records are CloudEvents whose `traceparent` the handling joins
        (`stoker.telemetry.tracing.handling`); `for_events` sets it."""
        self._bus = bus
        self._group = group
        self._topics = list(topic_names)
        self._handler = handler
        self._decode = decode
        self._config = config or ConsumerConfig()
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._handler_retry = self._config.handler_retry
        self._source: RecordSource | None = None
        self.handled = 0
        self.passed_over = 0
        self.dead_lettered = 0
        self._traced = traced
        self._lag: ReportsLag | None = None
        self._lag_due = 0.0
        self._lag_shown: set[TopicPartition] = set()

    @classmethod
    def for_events(
        cls,
        bus: EventBus,
        group: str,
        topic_names: Sequence[str],
        handler: Handler[CloudEvent],
        *,
        wanted: Collection[type[EventData]] | None = None,
        statuses: Collection[str] | None = None,
        **kwargs: object,
    ) -> Consumer[CloudEvent]:
        """A consumer of stoker CloudEvents, validated against the schemas. With `wanted`,
        events of other types, and with `statuses` status changes to other statuses, are
        passed over unvalidated (`decode_wanted_event`)."""
        decode: Callable[[bytes], CloudEvent | None] = (
            decode_event
            if wanted is None
            else functools.partial(
                decode_wanted_event,
                wanted=frozenset(wanted),
                statuses=None if statuses is None else frozenset(statuses),
            )
        )
        return Consumer[CloudEvent](
            bus,
            group,
            topic_names,
            handler,
            decode=decode,
            traced=True,
            **kwargs,  # type: ignore[arg-type]
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Handle batches until `stop` is set; the batch in hand is finished and committed."""
        try:
            while not stop.is_set():
                await self.run_once()
        finally:
            await self.close()

    async def close(self) -> None:
        """Leave the group (for callers of `run_once`; `run` does it itself)."""
        source, self._source = self._source, None
        self._lag = None
        for topic, partition in self._lag_shown:
            metrics.CONSUMER_LAG.remove(self._group, topic, str(partition))
        self._lag_shown.clear()
        if source is not None:
            await source.close()

    async def run_once(self) -> int:
        """Fetch one batch, handle it, commit it. Returns the number of records taken."""
        if self._source is None:
            self._source = self._bus.source(
                self._group, self._topics, background=self._config.background
            )
            self._lag = self._source if isinstance(self._source, ReportsLag) else None
        source = self._source
        records = await source.fetch(self._config.max_batch, self._config.poll_timeout_s)
        if self._lag is not None and time.monotonic() >= self._lag_due:
            self._show_lag(self._lag)
        if not records:
            return 0
        by_partition: dict[TopicPartition, list[BusRecord]] = defaultdict(list)
        for record in records:
            by_partition[(record.topic, record.partition)].append(record)
        done: dict[TopicPartition, int] = {}
        results: Sequence[BaseException | None]
        if self._config.in_turn:
            results = await self._handle_in_turn(by_partition, done)
        else:
            results = await asyncio.gather(
                *(self._handle_partition(tp, recs, done) for tp, recs in by_partition.items()),
                return_exceptions=True,
            )
        if done:
            await source.commit(done)
        for result in results:
            if isinstance(result, BaseException):
                # The source has read past records that were not handled; only a new member,
                # starting from the committed positions, will see them again.
                await self.close()
                raise result
        return len(records)

    async def _handle_in_turn(
        self, by_partition: dict[TopicPartition, list[BusRecord]], done: dict[TopicPartition, int]
    ) -> Sequence[BaseException]:
        """A batch partition after partition in this task (`ConsumerConfig.in_turn`). Stops
        at the first failure, as the batch is then given up anyway."""
        for tp, records in by_partition.items():
            try:
                await self._handle_partition(tp, records, done)
            except Exception as exc:
                return [exc]
        # A fetch of records the bus already holds need not suspend, nor need a handler
        # that hands records on: let the rest of the loop run once per batch, so that a
        # busy consumer cannot keep it waiting.
        await asyncio.sleep(0)
        return []

    def _show_lag(self, source: ReportsLag) -> None:
        """Set the lag gauges of the partitions the member holds (about once a second: the
        source refreshes its figures no more often), and drop those it gave up."""
        self._lag_due = time.monotonic() + 1.0
        lag = source.lag()
        for tp in self._lag_shown - lag.keys():
            metrics.CONSUMER_LAG.remove(self._group, tp[0], str(tp[1]))
        for (topic, partition), behind in lag.items():
            metrics.CONSUMER_LAG.labels(self._group, topic, str(partition)).set(behind)
        self._lag_shown = set(lag)

    async def _handle_partition(
        self, tp: TopicPartition, records: list[BusRecord], done: dict[TopicPartition, int]
    ) -> None:
        handled = 0
        try:
            for record in records:
                handled += await self._handle_record(record)
                done[tp] = record.offset + 1
        finally:
            # Counted once per partition and batch, not per record: off the launch path.
            if handled:
                self._handled_counter(tp[0]).inc(handled)

    def _handled_counter(self, topic: str) -> Any:
        return metrics.labelled(metrics.EVENTS_HANDLED, self._group, topic)

    async def _handle_record(self, record: BusRecord) -> bool:
        """Decode and handle one record; True if its handler succeeded."""
        try:
            item = self._decode(record.value)
        except EventRejected as exc:
            kind = exc.reason.split(":", 1)[0]
            await self._dead_letter(record, kind, exc.reason, attempts=0)
            _bound(record).warning("record rejected", reason=exc.reason)
            return False
        if item is None:
            self.passed_over += 1
            return False
        if not self._traced:
            return await self._handle_item(item, record)
        event = cast(CloudEvent, item)
        attributes = (
            {
                "messaging.system": "stoker",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self._group,
                "cloudevents.event_type": event.type,
                "cloudevents.event_subject": event.subject,
            }
            if tracing.enabled()
            else None
        )
        with tracing.handling(f"{event.type} process", event.traceparent, attributes):
            return await self._handle_item(item, record)

    async def _handle_item(self, item: T, record: BusRecord) -> bool:
        try:
            await self._handler(item, record)
        except Exception as exc:
            return await self._try_again(item, record, exc)
        self.handled += 1
        return True

    async def _try_again(self, item: T, record: BusRecord, failed: Exception) -> bool:
        """The handler failed with `failed`: try it again as `handler_retry` says, while the
        error is retriable or `handler_attempts` are not used up; then dead-letter the
        record with the last error."""
        worth_another_try = _TriesLeft(self._config.handler_attempts)
        tries = 1
        retrying = self._handler_retry.retrying(
            retry_on=worth_another_try, sleep=self._sleep, before_sleep=_log_retry(record)
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    if tries == 1:
                        # The first call ran outside this loop, so that a handler that
                        # succeeds costs nothing here; the loop starts by judging its error.
                        raise failed
                    await self._handler(item, record)
        except Exception as exc:
            await self._dead_letter(record, "handler", _reason(exc), attempts=tries)
            _bound(record).error(
                "handler failed; record dead-lettered", attempts=tries, reason=_reason(exc)
            )
            return False
        self.handled += 1
        return True

    async def _dead_letter(self, record: BusRecord, kind: str, reason: str, attempts: int) -> None:
        letter = dead_letter_event(
            record,
            group=self._group,
            kind=kind,
            reason=reason,
            attempts=attempts,
            at=self._clock.now(),
        )
        await self._bus.publish(self._config.dead_letter_topic, letter)
        self.dead_lettered += 1
        metrics.EVENTS_DEAD_LETTERED.labels(
            self._group, record.topic, kind if kind in _KINDS else "schema"
        ).inc()


_KINDS = {"decode", "schema", "unknown-type", "handler"}


def dead_letter_event(
    record: BusRecord, *, group: str, kind: str, reason: str, attempts: int, at: datetime
) -> CloudEvent:
    """The dead-letter record for `record`: the original bytes (UTF-8, else base64) and why,
    with secrets redacted (a rejected submission may carry a raw webhook URL or a token)."""
    try:
        text, encoding = redact_record_text(record.value.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(record.value).decode("ascii"), "base64"
    letter = DeadLetter(
        original_topic=record.topic,
        original_partition=record.partition,
        original_offset=record.offset,
        original_key=record.key or "<none>",
        original_value=text,
        original_value_encoding=encoding,  # type: ignore[arg-type]
        consumer_group=group,
        error_kind=kind if kind in _KINDS else "schema",  # type: ignore[arg-type]
        reason=redact_text(reason)[:4000],
        attempts=attempts,
        failed_at=at,
    )
    return CloudEvent.wrap(letter, time=at)


def redact_record_text(text: str) -> str:
    """A record's text with secrets masked: JSON field by field (so keys such as `token`
    and notification targets' URLs are recognised), other text by pattern. Unchanged JSON
    keeps its original bytes."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return redact_text(text)
    cleaned = redact(doc)
    return text if cleaned == doc else orjson.dumps(cleaned).decode()


def _bound(record: BusRecord) -> Any:
    """A logger naming the record, made only when there is something to say: binding one
    for every record handled was a visible share of a busy consumer's CPU."""
    return log.bind(
        topic=record.topic, partition=record.partition, offset=record.offset, key=record.key
    )


class _TriesLeft:
    """Whether a failed handler call is worth another try: always for a retriable error
    (an outage must not dead-letter the stream), otherwise until `attempts` such errors."""

    def __init__(self, attempts: int) -> None:
        self._attempts = attempts
        self._failures = 0

    def __call__(self, error: BaseException) -> bool:
        if is_retriable(error):
            return True
        self._failures += 1
        return self._failures < self._attempts


def _log_retry(record: BusRecord) -> Callable[[tenacity.RetryCallState], None]:
    def logged(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        retriable = error is not None and is_retriable(error)
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        bound = _bound(record)
        (bound.warning if retriable else bound.info)(
            "handler failed; retrying",
            attempt=state.attempt_number,
            retriable=retriable,
            delay_s=round(wait_s, 3),
            reason=_reason(error) if error is not None else "",
        )

    return logged


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
