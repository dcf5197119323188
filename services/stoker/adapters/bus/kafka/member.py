"""One member of a Kafka consumer group: the bus's `RecordSource`.

One librdkafka consumer per member, auto-commit off. librdkafka's consumer must not be
called from two threads at once, and runs rebalance callbacks inside the call that met the
rebalance. So the calls that may wait (waiting for records, writing positions, closing)
run in order on the member's own thread, where librdkafka waits in C without the GIL. A
fetch first takes the records librdkafka already holds on the event loop (`consume` with a
zero timeout returns at once), but only while no call is in hand on that thread: a busy
member then fetches without handing each batch to a thread and back.

Commits: `commit` records the positions of handled records and writes them to the broker
at most every `commit_interval_ms`, and always on a rebalance, when a fetch comes back
empty and on close. A crash can therefore redeliver up to one interval of handled records
(at-least-once; every handler drops copies).

Rebalances: librdkafka runs rebalance callbacks only inside `consume` and `poll`, and the
consumer loop fetches only after it committed the batch in hand. So when partitions are
revoked no batch is in flight, and the revoke callback writes the pending positions while
the partitions are still this member's: a record is never handled by two members at once.
A revoke met by a fetch on the event loop writes them from there, one broker round trip
the loop waits for, once per rebalance.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

import structlog
from confluent_kafka import KafkaException, TopicPartition

from stoker.adapters.bus.kafka.broker import wait_reachable
from stoker.adapters.bus.kafka.config import KafkaConfig
from stoker.adapters.bus.kafka.errors import KafkaFailure, translate
from stoker.core.errors import StokerError
from stoker.ports.bus import BusRecord
from stoker.ports.bus import TopicPartition as Position

log = structlog.get_logger("stoker.adapters.bus.kafka")

T = TypeVar("T")


class KafkaMessage(Protocol):
    """What a member reads of a librdkafka message."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...
    def headers(self) -> Any: ...


class GroupConsumer(Protocol):
    """The calls a member makes on librdkafka's consumer (`confluent_kafka.Consumer`)."""

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> Sequence[KafkaMessage]: ...
    def poll(self, timeout: float) -> KafkaMessage | None: ...
    def assignment(self) -> list[TopicPartition]: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> object: ...
    def list_topics(self, *, timeout: float) -> object: ...
    def close(self) -> None: ...


NewConsumer = Callable[[dict[str, Any]], GroupConsumer]
"""Makes a member's consumer from its librdkafka settings."""


class KafkaMember:
    """One member of a consumer group on Kafka."""

    def __init__(
        self,
        config: KafkaConfig,
        group: str,
        topics: list[str],
        *,
        fetch_max_wait_ms: int,
        new_consumer: NewConsumer,
        on_close: Callable[[KafkaMember], None],
    ) -> None:
        self._config = config
        self._group = group
        self._topics = topics
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._new_consumer = new_consumer
        self._on_close = on_close
        self._consumer: GroupConsumer | None = None
        # Calls on the member's thread run in the order given; the last one given tells
        # whether the thread is idle (a fetch may then take held records on the loop).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stoker-kafka-member")
        self._in_hand: Future[Any] | None = None
        self._closed = False
        self._log = log.bind(group=group, client=f"{config.client_id}-{uuid.uuid4().hex[:8]}")
        # Positions of handled records not yet written to the broker, and when the last
        # write happened (monotonic seconds). Recorded on the event loop, written on the
        # member's thread (also from inside `consume`, on a revoke): hence the lock.
        self._uncommitted: dict[Position, int] = {}
        self._uncommitted_lock = threading.Lock()
        self._last_commit = time.monotonic()
        self._lag: dict[Position, int] = {}
        self._lag_due = 0.0

    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka settings of this member's consumer."""
        return self._config.librdkafka(
            **{
                "group.id": self._group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self._config.session_timeout_ms,
                "heartbeat.interval.ms": self._config.heartbeat_interval_ms,
                "fetch.wait.max.ms": self._fetch_max_wait_ms,
                "fetch.min.bytes": self._config.fetch_min_bytes,
            }
        )

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        if self._consumer is None:
            await wait_reachable(
                "consumer", lambda wait_s: self._on_thread(self._probe, wait_s), self._config
            )
        messages = self._held(max_records)
        if not messages:
            messages = await self._on_thread(self._wait_for_records, max_records, timeout_s)
        records: list[BusRecord] = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise translate(error, "fetch")
                # Transient conditions (a topic not created yet, a broker restarting) are
                # reported as messages; librdkafka recovers by itself.
                self._log.debug("kafka fetch reported a condition", error=error.str())
                continue
            value = m.value()
            headers = m.headers()
            records.append(
                BusRecord(
                    m.topic() or "",
                    m.partition() or 0,
                    m.offset() or 0,
                    _text(m.key()),
                    value if isinstance(value, bytes) else (value or "").encode(),
                    _headers(headers) if headers else _NO_HEADERS,
                )
            )
        return records

    async def commit(self, positions: Mapping[Position, int]) -> None:
        with self._uncommitted_lock:
            self._uncommitted.update(positions)
        # Most batches only record their positions: no thread hop until a write is due.
        if time.monotonic() - self._last_commit >= self._config.commit_interval_s:
            await self._on_thread(self._flush)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        try:
            await self._on_thread(self._close)
        finally:
            self._thread.shutdown(wait=True)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        call = self._thread.submit(fn, *args)
        self._in_hand = call
        return await asyncio.wrap_future(call)

    def _held(self, max_records: int) -> Sequence[KafkaMessage]:
        """Records librdkafka already holds, taken on the event loop; none while a call is
        in hand on the member's thread (a fetch given up by its caller may still be waiting
        there), so that the consumer is never called from two threads at once."""
        consumer, in_hand = self._consumer, self._in_hand
        if consumer is None or (in_hand is not None and not in_hand.done()):
            return []
        try:
            messages = consumer.consume(max_records, 0)
        except KafkaException as exc:
            raise translate(exc, "fetch") from exc
        self._refresh_lag(consumer)
        return messages

    def lag(self) -> Mapping[Position, int]:
        """Records after this member's position in each partition assigned to it, as
        librdkafka last saw the partition's end (refreshed about once a second)."""
        return self._lag

    def _refresh_lag(self, consumer: GroupConsumer) -> None:
        """The lag from librdkafka's own figures, without a broker call: the high watermark
        each fetch response brings (`cached=True`) and the consumer's position. Called only
        where calls on the consumer are safe (its thread, or the loop while it is idle)."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        lag: dict[Position, int] = {}
        try:
            for tp in consumer.position(consumer.assignment()):
                marks = consumer.get_watermark_offsets(tp, cached=True)
                if marks is None or tp.offset < 0:
                    continue  # nothing fetched from it yet: not known
                lag[(tp.topic, tp.partition)] = max(0, marks[1] - tp.offset)
        except KafkaException as exc:
            self._log.debug("kafka lag not known", error=str(exc))
            return
        self._lag = lag
        if lag:  # until a partition's figures are known, look again at the next fetch
            self._lag_due = now + 1.0

    # --- on the member's thread -----------------------------------------------------------

    def _probe(self, timeout_s: float) -> None:
        """Broker metadata through the member's own consumer (which connects it)."""
        self._consumer_here().list_topics(timeout=timeout_s)

    def _consumer_here(self) -> GroupConsumer:
        if self._consumer is None:
            consumer = self._new_consumer(self.consumer_config())
            consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked)
            self._consumer = consumer
        return self._consumer

    def _wait_for_records(self, max_records: int, timeout_s: float) -> Sequence[KafkaMessage]:
        consumer = self._consumer_here()
        try:
            # `consume(n, timeout)` waits until it has n records or the time is up, which
            # would hold a busy pipeline's every hop for the whole timeout. So: take what is
            # there; only when nothing is, wait for the first record, then take what came
            # with it.
            messages = consumer.consume(max_records, 0)
            if not messages:
                first = consumer.poll(timeout_s)
                if first is not None:
                    messages = [first, *consumer.consume(max_records - 1, 0)]
        except KafkaException as exc:
            raise translate(exc, "fetch") from exc
        self._refresh_lag(consumer)
        if not messages:
            # Idle: nothing will come to trigger a due commit, so write what is pending now.
            self._flush()
        return messages

    def _flush(self, only: set[Position] | None = None) -> None:
        """Write the pending positions of partitions still assigned to this member."""
        consumer = self._consumer
        with self._uncommitted_lock:
            if only is None:
                positions, self._uncommitted = self._uncommitted, {}
            else:
                positions = {p: o for p, o in self._uncommitted.items() if p in only}
                for p in positions:
                    del self._uncommitted[p]
        self._last_commit = time.monotonic()
        if consumer is None or not positions:
            return
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items() if (t, p) in assigned]
        skipped = sorted(f"{t}/{p}" for t, p in positions if (t, p) not in assigned)
        if skipped:
            self._log.warning(
                "commit skipped for partitions no longer assigned; they will be redelivered",
                partitions=skipped,
            )
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            failure = translate(exc, "commit")
            if failure.commit_refused:
                # The group rebalanced under us: the new owner reads from the last committed
                # position, so these records are delivered again (at-least-once), not lost.
                self._log.warning(
                    "commit refused after a rebalance; records will be redelivered",
                    error=str(failure),
                )
                return
            raise failure from exc

    def _revoked(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        # Still assigned until this callback returns: the positions can be written.
        try:
            self._flush({(tp.topic, tp.partition) for tp in partitions})
        except KafkaFailure as exc:
            self._log.warning(
                "commit at rebalance failed; records will be redelivered", error=str(exc)
            )

    def _assigned(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self._log.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in partitions),
        )

    def _close(self) -> None:
        try:
            self._flush()
        except KafkaFailure as exc:
            # The positions are lost, not the records: they are delivered again.
            self._log.warning("final commit failed; records will be redelivered", error=str(exc))
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except KafkaException as exc:
                raise translate(exc, "consumer stop") from exc


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
"""Shared by every record without headers (most of them): read-only, so sharing is safe."""


def _headers(headers: object) -> dict[str, str]:
    pairs: Any = headers.items() if isinstance(headers, dict) else headers
    return {str(name): _text(value) for name, value in pairs}


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
