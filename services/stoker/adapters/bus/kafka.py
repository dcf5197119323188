"""The Kafka event bus (aiokafka).

Publishing: one idempotent producer (`enable_idempotence`, `acks=all`), the event subject as
key, so one job's events share a partition and stay in order. `publish_many` hands every
record to the producer's accumulator before awaiting any delivery, so they travel in
batches instead of one round trip each.

Consuming: one `AIOKafkaConsumer` per group member, auto-commit off. `commit` records the
positions of handled records and writes them to the broker at most every
`commit_interval_ms`, and always on a rebalance, when a fetch comes back empty and on close:
a commit per batch was one broker round trip per few records, the largest single cost of a
busy pipeline. A crash can therefore redeliver up to one interval of handled records
(at-least-once, as before; every handler drops copies). On a rebalance the member finishes
the batch in hand and commits it before it lets its partitions go, so a record is never
handled by two members at once.

Fetching: the broker holds a fetch until `fetch_min_bytes` are there or `fetch_max_wait_ms`
passed. A busy topic then comes in batches instead of one fetch round trip per record,
and a quiet one costs one fetch per member per wait instead of a stream of them.

aiokafka errors are translated here into `stoker.core.errors`; nothing above sees them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    for_code,
)

from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord
from stoker.ports.bus import TopicPartition as Position
from stoker.settings import Settings, load_settings

log = structlog.get_logger("stoker.adapters.bus.kafka")

C = TypeVar("C", bound="_Client")

_FETCH_GRACE_S = 0.5
"""How much longer than its timeout a fetch may take before it gives up and returns empty."""


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def translate(exc: KafkaError, doing: str) -> StokerError:
    """The stoker error for an aiokafka one; retriability comes from aiokafka's own flag."""
    message = f"kafka {doing} failed: {type(exc).__name__}: {exc}"
    if exc.retriable or isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return InfrastructureUnavailable(message)
    return StokerError(message)


class KafkaBus:
    """The Kafka `EventBus`.

    bootstrap: host:port[,host:port] (default: Settings.kafka_bootstrap).
    partitions / replication: for topics made by `ensure_topics` (default: Settings).
    connect_timeout_s: how long `start` keeps retrying an unreachable broker (30 s).
    session_timeout_ms / heartbeat_interval_ms: group liveness; a member that died loses
        its partitions after the session timeout (10 s / 3 s, the broker's minimum is 6 s).
    revoke_wait_s: longest a rebalance waits for the batch in hand to be committed (30 s).
    fetch_max_wait_ms / fetch_min_bytes / commit_interval_ms: see the module docstring
        (default: Settings, 20 ms / 16 KiB / 200 ms).
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
        revoke_wait_s: float = 30.0,
        client_id: str = "stoker",
        fetch_max_wait_ms: int | None = None,
        fetch_min_bytes: int | None = None,
        commit_interval_ms: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.bootstrap = bootstrap or settings.kafka_bootstrap
        self.partitions = partitions or settings.kafka_partitions
        self.replication = replication or settings.kafka_replication
        self.fetch_max_wait_ms = _or(fetch_max_wait_ms, settings.kafka_fetch_max_wait_ms)
        self.fetch_min_bytes = _or(fetch_min_bytes, settings.kafka_fetch_min_bytes)
        self.commit_interval_s = _or(commit_interval_ms, settings.kafka_commit_interval_ms) / 1000
        if connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {connect_timeout_s}")
        if heartbeat_interval_ms * 3 > session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be at most a third of"
                f" session_timeout_ms ({session_timeout_ms})"
            )
        self.connect_timeout_s = connect_timeout_s
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.revoke_wait_s = revoke_wait_s
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = asyncio.Lock()
        self._sources: set[_KafkaSource] = set()

    async def start(self) -> None:
        """Connect the producer, retrying an unreachable broker until connect_timeout_s."""
        async with self._start_lock:
            if self._producer is None:
                self._producer = await self.start_client(
                    "producer",
                    lambda: AIOKafkaProducer(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.client_id,
                        acks="all",
                        enable_idempotence=True,
                    ),
                )

    async def close(self) -> None:
        for source in list(self._sources):
            await source.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                raise translate(exc, "producer stop") from exc

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = await self.start_client(
            "admin", lambda: AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        )
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in dict.fromkeys(topics) if t not in existing]
            if not missing:
                return
            response = await admin.create_topics(
                [NewTopic(t, self.partitions, self.replication) for t in missing]
            )
            for name, code, *_ in response.topic_errors:
                error = for_code(code)
                # Another process may have created it a moment ago: that is success too.
                if code and error is not TopicAlreadyExistsError:
                    raise translate(error(f"topic {name}"), "create topic")
            log.info("topics created", topics=missing, partitions=self.partitions)
        except KafkaError as exc:
            raise translate(exc, "ensure_topics") from exc
        finally:
            await admin.close()

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._send(topic, [(e.subject.encode(), e.to_json()) for e in events])

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._send(topic, [(key.encode(), value)])

    def source(self, group: str, topics: Sequence[str]) -> _KafkaSource:
        member = _KafkaSource(self, group, list(topics))
        self._sources.add(member)
        return member

    async def _send(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        try:
            # Queue everything first, then wait: the accumulator batches per partition and
            # one in-flight request per partition keeps per-key order.
            deliveries = [
                await self._producer.send(topic, value=value, key=key) for key, value in items
            ]
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        except KafkaError as exc:
            raise translate(exc, f"publish to {topic}") from exc
        for result in results:
            if isinstance(result, KafkaError):
                raise translate(result, f"publish to {topic}") from result
            if isinstance(result, BaseException):
                raise result

    async def start_client(self, what: str, make: Callable[[], C]) -> C:
        """Start a client, retrying with backoff; one log line per failed attempt."""
        deadline = time.monotonic() + self.connect_timeout_s
        attempt = 0
        while True:
            attempt += 1
            client = make()
            try:
                await client.start()
            except KafkaError as exc:
                await _stop_quietly(client.stop)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InfrastructureUnavailable(
                        f"kafka {what}: broker {self.bootstrap} unreachable after {attempt}"
                        f" attempts in {self.connect_timeout_s:.0f} s: {exc}"
                    ) from exc
                delay = min(0.2 * 2 ** (attempt - 1), 5.0, remaining)
                log.warning(
                    "kafka unreachable; retrying",
                    client=what,
                    bootstrap=self.bootstrap,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(delay)
            else:
                if attempt > 1:
                    log.info("kafka reachable", client=what, attempts=attempt)
                return client


def _or(given: int | None, default: int) -> int:
    return default if given is None else given


async def _stop_quietly(stop: Callable[[], Awaitable[None]]) -> None:
    # Releases sockets of a client whose start failed; a second error would hide the first.
    try:
        await stop()
    except KafkaError as exc:
        log.debug("stopping a half-started kafka client failed", error=repr(exc))


class _KafkaSource(ConsumerRebalanceListener):  # type: ignore[misc]
    """One member of a consumer group on Kafka."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str]) -> None:
        self._bus = bus
        self._group = group
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        # Set while no fetched batch is waiting for its commit.
        self._settled = asyncio.Event()
        self._settled.set()
        # Cleared from the revoke callback until the new assignment arrives.
        self._may_fetch = asyncio.Event()
        self._may_fetch.set()
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._log = log.bind(group=group, client=f"{bus.client_id}-{uuid.uuid4().hex[:8]}")
        # Positions of handled records not yet written to the broker, and when the last
        # write happened (monotonic seconds).
        self._uncommitted: dict[Position, int] = {}
        self._last_commit = time.monotonic()

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        consumer = await self._ensure_consumer()
        # The caller fetches again only once it settled the previous batch.
        self._settled.set()
        if not self._may_fetch.is_set():
            try:
                await asyncio.wait_for(self._may_fetch.wait(), timeout_s)
            except TimeoutError:
                return []
        try:
            # getmany ignores its timeout while a rebalance is under way (it waits for the
            # new assignment), so the port's promise to return in time is kept here.
            async with asyncio.timeout(timeout_s + _FETCH_GRACE_S):
                batches = await consumer.getmany(
                    timeout_ms=int(timeout_s * 1000), max_records=max_records
                )
        except TimeoutError:
            return []
        except KafkaError as exc:
            raise translate(exc, "fetch") from exc
        if not batches:
            # Idle: nothing will come to trigger a due commit, so write what is pending now.
            await self._flush()
        if batches:
            # No await since getmany returned: a revoke callback that runs from now on sees
            # this batch in hand and waits for its commit before the partitions move.
            self._settled.clear()
        return [
            BusRecord(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                key=m.key.decode("utf-8", "replace") if m.key is not None else "",
                value=m.value if m.value is not None else b"",
                headers={k: v.decode("utf-8", "replace") for k, v in m.headers},
            )
            for messages in batches.values()
            for m in messages
        ]

    async def commit(self, positions: Mapping[Position, int]) -> None:
        try:
            self._uncommitted.update(positions)
            if time.monotonic() - self._last_commit >= self._bus.commit_interval_s:
                await self._flush()
        finally:
            self._settled.set()

    async def _flush(self) -> None:
        """Write the pending positions of partitions still assigned to this member."""
        consumer = self._consumer
        positions, self._uncommitted = self._uncommitted, {}
        self._last_commit = time.monotonic()
        try:
            if consumer is None or not positions:
                return
            assigned = consumer.assignment()
            offsets = {
                TopicPartition(t, p): o
                for (t, p), o in positions.items()
                if TopicPartition(t, p) in assigned
            }
            skipped = [tp for tp in positions if TopicPartition(*tp) not in assigned]
            if skipped:
                self._log.warning(
                    "commit skipped for partitions no longer assigned; they will be redelivered",
                    partitions=sorted(f"{t}/{p}" for t, p in skipped),
                )
            if offsets:
                await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner reads from the last committed
            # position, so these records are delivered again (at-least-once), not lost.
            self._log.warning(
                "commit refused after a rebalance; records will be redelivered", error=str(exc)
            )
        except KafkaError as exc:
            raise translate(exc, "commit") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._sources.discard(self)
        self._settled.set()
        try:
            await self._flush()
        except StokerError as exc:
            # The positions are lost, not the records: they are delivered again.
            self._log.warning("final commit failed; records will be redelivered", error=str(exc))
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except KafkaError as exc:
                raise translate(exc, "consumer stop") from exc

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._may_fetch.clear()
        if not revoked:
            return
        try:
            await asyncio.wait_for(self._settled.wait(), self._bus.revoke_wait_s)
        except TimeoutError:
            self._log.warning(
                "batch still in hand at rebalance; its records will be redelivered",
                waited_s=self._bus.revoke_wait_s,
            )
        try:
            # Still assigned until this callback returns: the positions can be written.
            await self._flush()
        except StokerError as exc:
            self._log.warning("commit at rebalance failed; records will be redelivered",
                              error=str(exc))  # fmt: skip

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._log.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )
        self._may_fetch.set()

    async def _ensure_consumer(self) -> AIOKafkaConsumer:
        async with self._start_lock:
            return await self._start_consumer()

    async def _start_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:

            def make() -> AIOKafkaConsumer:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self._bus.bootstrap,
                    group_id=self._group,
                    client_id=self._bus.client_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    session_timeout_ms=self._bus.session_timeout_ms,
                    heartbeat_interval_ms=self._bus.heartbeat_interval_ms,
                    fetch_max_wait_ms=self._bus.fetch_max_wait_ms,
                    fetch_min_bytes=self._bus.fetch_min_bytes,
                )
                consumer.subscribe(self._topics, listener=self)
                return consumer

            self._consumer = await self._bus.start_client("consumer", make)
        return self._consumer
