"""The Kafka event bus, on confluent-kafka (librdkafka).

Why librdkafka: its protocol work (batching, compression, request encoding, fetch parsing,
heartbeats) runs in C threads outside the GIL. The pure-Python client used before did its
protocol work on the event loop, the largest single cost of a busy pipeline; `bench/bus.py`
round trips ran at 11,837 messages/s on it and at 35,059 on this adapter (ADR 0007,
docs/bus.md).

Publishing: one idempotent producer (`enable.idempotence`, `acks=all`), the event subject
as key and Java's murmur2 partitioner, so a job's records land in the same partition
whichever client produced them and stay in order. A thread of the bus serves the
producer's delivery reports and hands them to the event loop in batches; `publish_many`
returns once every record of the call is acknowledged.

Consuming: one librdkafka consumer per group member, auto-commit off. Calls on it run one
at a time: a fetch first takes the records librdkafka already holds, on the event loop
(`consume` without a timeout returns at once; ADR 0017), and only when there are none waits
for them on the member's own thread (`consume` waits in C, without the GIL), as commits and
closing do.
`commit` records the positions of handled records and writes them to the broker at most
every `commit_interval_ms`, and always on a rebalance, when a fetch comes back empty and on
close. A crash can therefore redeliver up to one interval of handled records (at-least-once;
every handler drops copies).

Rebalances: librdkafka runs rebalance callbacks only inside `consume` and `poll`, and the
consumer loop fetches only after it committed the batch in hand. So when partitions are
revoked no batch is in flight, and the revoke callback writes the pending positions while
the partitions are still this member's: a record is never handled by two members at once.
A revoke met by a fetch on the event loop writes them from there, a broker round trip the
loop waits for, once per rebalance.

Fetching: the broker holds a fetch until `fetch_min_bytes` are there or `fetch_max_wait_ms`
passed, so a busy topic comes in batches and a quiet one costs little. Members nothing waits
on (`source(..., background=True)`; which ones are is the services' choice, ADR 0013) wait
up to `background_fetch_max_wait_ms` instead: every fetch is a request the broker serves,
and at a steady rate those short waits, not the records, were most of the broker's work.

librdkafka errors are translated here into `stoker.core.errors`; nothing above sees them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.events import CloudEvent
from stoker.core.retry import RetryPolicy
from stoker.ports.bus import BusRecord
from stoker.ports.bus import TopicPartition as Position
from stoker.settings import Settings, load_settings

if TYPE_CHECKING:
    from confluent_kafka._types import HeadersType

log = structlog.get_logger("stoker.adapters.bus.kafka")

LIBRDKAFKA_LOGGER = "stoker.adapters.bus.kafka.librdkafka"
"""librdkafka's own log lines (connection attempts and the like) go to this stdlib logger."""

T = TypeVar("T")

_DELIVERY_POLL_S = 0.05
"""How long the delivery thread waits for reports before checking whether it should stop."""
_BROKER_BACKOFF = RetryPolicy(initial_delay_s=0.2, multiplier=2, max_delay_s=5.0, jitter=0)
"""Waits between tries of a broker that does not answer, within the connect timeout."""
_CLOSE_FLUSH_S = 30.0
"""Longest `close` waits for records still on their way to the broker."""
_TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        # A request in flight on a broker handle librdkafka replaced: the admin client, once
        # the first metadata names the brokers, can drop the bootstrap connection under it.
        KafkaError._DESTROY_BROKER,
    }
)
# A commit the group refused because it moved on: the records are delivered again.
_COMMIT_REFUSED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)


def translate(error: KafkaError | KafkaException, doing: str) -> StokerError:
    """The stoker error for a librdkafka one; retriability comes from librdkafka's flags."""
    err = _error_of(error)
    message = f"kafka {doing} failed: {err.name()}: {err.str()}"
    if _transient(err):
        return InfrastructureUnavailable(message)
    return StokerError(message)


def _transient(err: KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in _TRANSIENT


async def retry_transient(
    call: Callable[[], T],
    doing: str,
    timeout_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call()` on a thread, called again with backoff while it fails with a transient
    librdkafka error and `timeout_s` has not passed; one log line per retry. Only for calls
    that may be repeated (creating topics that may exist already). Other errors, and the
    last transient one, come out translated."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.to_thread(call)
        except KafkaException as exc:
            err = _error_of(exc)
            remaining = deadline - time.monotonic()
            if not _transient(err) or remaining <= 0:
                raise translate(exc, doing) from exc
            delay = min(_BROKER_BACKOFF.delay_s(attempt), remaining)
            log.warning(
                "kafka request failed; retrying",
                doing=doing,
                attempt=attempt,
                retry_in_s=round(delay, 2),
                error=err.str(),
            )
            await sleep(delay)


def _error_of(error: KafkaError | KafkaException) -> KafkaError:
    if isinstance(error, KafkaException):
        inner = error.args[0] if error.args else None
        if isinstance(inner, KafkaError):
            return inner
        return KafkaError(KafkaError._FAIL, str(error))
    return error


class KafkaBus:
    """The Kafka `EventBus`.

    bootstrap: host:port[,host:port] (default: Settings.kafka_bootstrap).
    partitions / replication: for topics made by `ensure_topics` (default: Settings).
    connect_timeout_s: how long `start` keeps retrying an unreachable broker (30 s).
    session_timeout_ms / heartbeat_interval_ms: group liveness; a member that died loses
        its partitions after the session timeout (10 s / 3 s, the broker's minimum is 6 s).
    delivery_timeout_ms: how long a record may take to be acknowledged before its publish
        fails (30 s), so a broker outage surfaces as an error instead of a hang.
    linger_ms: how long the producer waits to fill a batch (2 ms).
    fetch_max_wait_ms / background_fetch_max_wait_ms / fetch_min_bytes / commit_interval_ms:
        see the module docstring (default: Settings, 10 ms / 100 ms / 16 KiB / 200 ms).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        partitions: int | None = None,
        replication: int | None = None,
        connect_timeout_s: float = 30.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        delivery_timeout_ms: int = 30_000,
        linger_ms: int = 2,
        client_id: str = "stoker",
        fetch_max_wait_ms: int | None = None,
        background_fetch_max_wait_ms: int | None = None,
        fetch_min_bytes: int | None = None,
        commit_interval_ms: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.bootstrap = bootstrap or settings.kafka_bootstrap
        self.partitions = partitions or settings.kafka_partitions
        self.replication = replication or settings.kafka_replication
        self.fetch_max_wait_ms = _or(fetch_max_wait_ms, settings.kafka_fetch_max_wait_ms)
        self.background_fetch_max_wait_ms = _or(
            background_fetch_max_wait_ms, settings.kafka_background_fetch_max_wait_ms
        )
        self.fetch_min_bytes = _or(fetch_min_bytes, settings.kafka_fetch_min_bytes)
        self.commit_interval_s = _or(commit_interval_ms, settings.kafka_commit_interval_ms) / 1000
        if connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {connect_timeout_s}")
        if heartbeat_interval_ms * 3 > session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be at most a third of"
                f" session_timeout_ms ({session_timeout_ms})"
            )
        if delivery_timeout_ms <= 0:
            raise ValueError(f"delivery_timeout_ms must be > 0, got {delivery_timeout_ms}")
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
        self.connect_timeout_s = connect_timeout_s
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.delivery_timeout_ms = delivery_timeout_ms
        self.linger_ms = linger_ms
        self.client_id = client_id
        self._producer: Producer | None = None
        self._deliveries: _DeliveryThread | None = None
        self._start_lock = asyncio.Lock()
        self._sources: set[_KafkaSource] = set()

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Settings every librdkafka client of this bus shares, plus `extra`."""
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
            **extra,
        }

    async def start(self) -> None:
        """Connect the producer, retrying an unreachable broker until connect_timeout_s."""
        async with self._start_lock:
            if self._producer is not None:
                return
            producer = Producer(
                self.client_config(
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": self.linger_ms,
                        "delivery.timeout.ms": self.delivery_timeout_ms,
                        "partitioner": "murmur2_random",
                    }
                )
            )
            await self.wait_reachable("producer", _metadata_probe(producer))
            self._producer = producer
            self._deliveries = _DeliveryThread(producer)

    async def close(self) -> None:
        for source in list(self._sources):
            await source.close()
        producer, self._producer = self._producer, None
        deliveries, self._deliveries = self._deliveries, None
        if producer is None or deliveries is None:
            return
        left = await asyncio.to_thread(deliveries.stop_and_flush, _CLOSE_FLUSH_S)
        if left:
            raise InfrastructureUnavailable(
                f"kafka producer closed with {left} records not acknowledged by {self.bootstrap}"
            )

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = AdminClient(self.client_config())
        await self.wait_reachable("admin", _metadata_probe(admin))
        wanted = list(dict.fromkeys(topics))

        def create() -> list[str]:
            existing = set(admin.list_topics(timeout=self.connect_timeout_s).topics)
            missing = [t for t in wanted if t not in existing]
            if not missing:
                return []
            futures = admin.create_topics(
                [NewTopic(t, self.partitions, self.replication) for t in missing],
                operation_timeout=self.connect_timeout_s,
            )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    err = _error_of(exc)
                    # Another process may have created it a moment ago: that is success too.
                    if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        named = f"topic {name}: {err.str()}"
                        raise KafkaException(
                            KafkaError(err.code(), named, retriable=err.retriable())
                        ) from exc
            return missing

        # Listing first makes a repeated call create only what is still missing.
        created = await retry_transient(create, "ensure_topics", self.connect_timeout_s)
        if created:
            log.info("topics created", topics=created, partitions=self.partitions)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._send(topic, [(e.subject.encode(), e.to_json()) for e in events])

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._send(topic, [(key.encode(), value)])

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> _KafkaSource:
        wait_ms = self.background_fetch_max_wait_ms if background else self.fetch_max_wait_ms
        member = _KafkaSource(self, group, list(topics), fetch_max_wait_ms=wait_ms)
        self._sources.add(member)
        return member

    async def _send(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        if not items:
            return
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        batch = _Batch(asyncio.get_running_loop(), len(items))
        for key, value in items:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=batch.delivered)
                    break
                except BufferError:
                    # The local queue is full; the delivery thread drains it.
                    await asyncio.sleep(0.005)
                except KafkaException as exc:
                    batch.abandon(exc)
                    break
        error = await batch.future
        if error is not None:
            raise translate(error, f"publish to {topic}") from None

    async def wait_reachable(self, what: str, probe: Callable[[float], Awaitable[object]]) -> None:
        """Ask the broker for metadata (`probe(timeout_s)`) until it answers, with backoff;
        one log line per failed attempt; InfrastructureUnavailable after connect_timeout_s."""
        deadline = time.monotonic() + self.connect_timeout_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                await probe(max(0.1, min(0.2 * attempt, 5.0, remaining)))
            except KafkaException as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InfrastructureUnavailable(
                        f"kafka {what}: broker {self.bootstrap} unreachable after {attempt}"
                        f" attempts in {self.connect_timeout_s:.0f} s: {_error_of(exc).str()}"
                    ) from exc
                delay = min(_BROKER_BACKOFF.delay_s(attempt), remaining)
                log.warning(
                    "kafka unreachable; retrying",
                    client=what,
                    bootstrap=self.bootstrap,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    error=_error_of(exc).str(),
                )
                await asyncio.sleep(delay)
            else:
                if attempt > 1:
                    log.info("kafka reachable", client=what, attempts=attempt)
                return


def _or(given: int | None, default: int) -> int:
    return default if given is None else given


def _metadata_probe(client: Producer | AdminClient) -> Callable[[float], Awaitable[object]]:
    def probe(timeout_s: float) -> Awaitable[object]:
        return asyncio.to_thread(client.list_topics, timeout=timeout_s)

    return probe


class _Batch:
    """The records of one publish call: done when the last is acknowledged or one failed.

    Delivery reports arrive on the delivery thread; the outcome reaches the event loop once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        self._loop = loop
        self.future: asyncio.Future[KafkaError | KafkaException | None] = loop.create_future()
        self._waiting = records
        self._error: KafkaError | KafkaException | None = None
        self._lock = threading.Lock()

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        self._settle(1, error)

    def abandon(self, error: KafkaException) -> None:
        """`produce` refused a record: the call fails now. That record and the ones after it
        were never handed over; whatever the earlier ones do, the outcome is this error."""
        with self._lock:
            unsent = self._waiting
        self._settle(unsent, error)

    def _settle(self, records: int, error: KafkaError | KafkaException | None) -> None:
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
            self._waiting -= records
            done = self._waiting <= 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self._error)


class _DeliveryThread:
    """Serves the producer's delivery reports on a thread of its own."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="stoker-kafka-deliveries", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(_DELIVERY_POLL_S)

    def stop_and_flush(self, timeout_s: float) -> int:
        """Stop serving, then wait for what is in flight; returns how many records are left."""
        self._stop.set()
        self._thread.join()
        left: int = self._producer.flush(timeout_s)
        return left


class _KafkaSource:
    """One member of a consumer group on Kafka."""

    def __init__(
        self, bus: KafkaBus, group: str, topics: list[str], *, fetch_max_wait_ms: int
    ) -> None:
        self._bus = bus
        self._group = group
        self._topics = topics
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: Consumer | None = None
        # Calls that may wait run here, in order; a fetch of records already held runs on
        # the loop, only while nothing runs here (`_waiting`): librdkafka's consumer must not
        # be called from two threads at once, and its rebalance callbacks run in the caller.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stoker-kafka-member")
        self._last_on_thread: Future[Any] | None = None
        self._closed = False
        self._log = log.bind(group=group, client=f"{bus.client_id}-{uuid.uuid4().hex[:8]}")
        # Positions of handled records not yet written to the broker, and when the last
        # write happened (monotonic seconds). Recorded on the event loop, written on the
        # member's thread (also from inside `consume`, on a revoke): hence the lock.
        self._uncommitted: dict[Position, int] = {}
        self._uncommitted_lock = threading.Lock()
        self._last_commit = time.monotonic()

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        if self._consumer is None:
            await self._bus.wait_reachable(
                "consumer", lambda timeout_s: self._on_thread(self._probe, timeout_s)
            )
        messages = self._waiting(max_records)
        if not messages:
            messages = await self._on_thread(self._fetch, max_records, timeout_s)
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
            key, value, headers = m.key(), m.value(), m.headers()
            records.append(
                BusRecord(
                    m.topic() or "",
                    m.partition() or 0,
                    m.offset() or 0,
                    _text(key),
                    value if isinstance(value, bytes) else (value or "").encode(),
                    _headers(headers) if headers else _NO_HEADERS,
                )
            )
        return records

    async def commit(self, positions: Mapping[Position, int]) -> None:
        with self._uncommitted_lock:
            self._uncommitted.update(positions)
        # Most batches only record their positions: no thread hop until a write is due.
        if time.monotonic() - self._last_commit >= self._bus.commit_interval_s:
            await self._on_thread(self._flush)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._sources.discard(self)
        try:
            await self._on_thread(self._close)
        finally:
            self._thread.shutdown(wait=True)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        call = self._thread.submit(fn, *args)
        self._last_on_thread = call
        return await asyncio.wrap_future(call)

    def _waiting(self, max_records: int) -> list[Message]:
        """Records librdkafka already holds, taken on the event loop itself.

        `consume` with no timeout returns at once, so a busy member needs no thread hop,
        which cost each batch two hand-offs of the GIL (each up to the switch interval while
        the loop is busy) and a round of the loop (ADR 0017). Only while the member's thread
        has nothing in hand, so that the consumer is never called from two threads at once.
        """
        consumer, last = self._consumer, self._last_on_thread
        if consumer is None or (last is not None and not last.done()):
            return []
        try:
            return consumer.consume(max_records, 0)
        except KafkaException as exc:
            raise translate(exc, "fetch") from exc

    # --- on the member's thread -----------------------------------------------------------

    def _probe(self, timeout: float) -> None:
        """Broker metadata through the member's own consumer (which connects it)."""
        self._consumer_here().list_topics(timeout=timeout)

    def _consumer_here(self) -> Consumer:
        if self._consumer is None:
            consumer = Consumer(self.consumer_config())
            consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked)
            self._consumer = consumer
        return self._consumer

    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka settings of this member's consumer."""
        return self._bus.client_config(
            **{
                "group.id": self._group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self._bus.session_timeout_ms,
                "heartbeat.interval.ms": self._bus.heartbeat_interval_ms,
                "fetch.wait.max.ms": self._fetch_max_wait_ms,
                "fetch.min.bytes": self._bus.fetch_min_bytes,
            }
        )

    def _fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        consumer = self._consumer_here()
        try:
            # `consume(n, timeout)` waits until it has n records or the time is up, which
            # held every hop of a busy pipeline for the whole timeout. So: take what is
            # there; only when nothing is, wait for the first record, then take what came
            # with it.
            messages: list[Message] = consumer.consume(max_records, 0)
            if not messages:
                first = consumer.poll(timeout_s)
                if first is not None:
                    messages = [first, *consumer.consume(max_records - 1, 0)]
        except KafkaException as exc:
            raise translate(exc, "fetch") from exc
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
            if _error_of(exc).code() in _COMMIT_REFUSED:
                # The group rebalanced under us: the new owner reads from the last committed
                # position, so these records are delivered again (at-least-once), not lost.
                self._log.warning(
                    "commit refused after a rebalance; records will be redelivered",
                    error=_error_of(exc).str(),
                )
                return
            raise translate(exc, "commit") from exc

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Still assigned until this callback returns: the positions can be written.
        try:
            self._flush({(tp.topic, tp.partition) for tp in partitions})
        except StokerError as exc:
            self._log.warning("commit at rebalance failed; records will be redelivered",
                              error=str(exc))  # fmt: skip

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._log.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in partitions),
        )

    def _close(self) -> None:
        try:
            self._flush()
        except StokerError as exc:
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


def _headers(headers: HeadersType | None) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, dict) else (headers or [])
    return {name: _text(value) for name, value in pairs}


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
