"""Adapter behaviour outside the shared contract: durability, start-up and error translation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException

from stoker.adapters.bus import KafkaBus, SqliteLogBus, partition_for
from stoker.adapters.bus.kafka import retry_transient
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.ports.bus import BusRecord
from stoker.settings import Settings

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from stoker.adapters.bus import SqliteLogBus

    async def main():
        bus = SqliteLogBus(sys.argv[1])
        n = 0
        while True:
            await bus.publish_raw("durable", f"key-{n % 7}", str(n).encode())
            print("ACK", n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


async def read_all(bus: SqliteLogBus, topic: str) -> list[BusRecord]:
    source = bus.source("reader", [topic])
    records: list[BusRecord] = []
    try:
        while batch := await source.fetch(1000, 0.3):
            records.extend(batch)
    finally:
        await source.close()
    return records


async def test_sqlite_log_keeps_every_acknowledged_publish_across_kill_9(tmp_path: Path) -> None:
    """A publisher process killed with SIGKILL mid-stream loses none of the records whose
    publish had returned."""
    path = tmp_path / "bus.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    acked: list[int] = []
    try:
        while len(acked) < 150:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the publisher exited early"
            if line.startswith(b"ACK "):
                acked.append(int(line.split()[1]))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    bus = SqliteLogBus(path)
    try:
        stored = {int(r.value) for r in await read_all(bus, "durable")}
    finally:
        await bus.close()
    assert set(acked) <= stored


async def test_sqlite_topic_partition_count_is_fixed_at_first_use(tmp_path: Path) -> None:
    """A process configured with another partition count still maps keys like the process
    that created the topic, so per-key order holds across processes."""
    path = tmp_path / "bus.sqlite3"
    first, second = SqliteLogBus(path, partitions=8), SqliteLogBus(path, partitions=3)
    try:
        await first.publish_raw("orders", "job-42", b"1")
        await second.publish_raw("orders", "job-42", b"2")
        records = await read_all(second, "orders")
    finally:
        await first.close()
        await second.close()
    assert [(r.partition, r.offset, r.value) for r in records] == [
        (partition_for("job-42", 8), 0, b"1"),
        (partition_for("job-42", 8), 1, b"2"),
    ]


async def test_sqlite_log_that_cannot_open_its_file_raises_a_stoker_error(tmp_path: Path) -> None:
    """An unusable database path surfaces as InfrastructureUnavailable, not sqlite3's error."""
    bus = SqliteLogBus(tmp_path)  # a directory, not a file
    with pytest.raises(InfrastructureUnavailable, match="unable to open database file"):
        await bus.start()
    await bus.close()


def test_a_background_kafka_member_lets_the_broker_hold_its_fetches_longer() -> None:
    """Each member's consumer gets the wait of its kind; the defaults come from Settings."""
    bus = KafkaBus("127.0.0.1:1", fetch_max_wait_ms=7, background_fetch_max_wait_ms=70)
    assert bus.source("eager", ["t"]).consumer_config()["fetch.wait.max.ms"] == 7
    assert bus.source("lazy", ["t"], background=True).consumer_config()["fetch.wait.max.ms"] == 70
    settings = Settings(kafka_fetch_max_wait_ms=3, kafka_background_fetch_max_wait_ms=300)
    configured = KafkaBus("127.0.0.1:1", settings=settings)
    assert configured.source("eager", ["t"]).consumer_config()["fetch.wait.max.ms"] == 3
    lazy = configured.source("lazy", ["t"], background=True).consumer_config()
    assert lazy["fetch.wait.max.ms"] == 300
    assert lazy["group.id"] == "lazy"


async def test_kafka_start_retries_an_unreachable_broker_then_gives_up() -> None:
    """Against a closed port, start logs one line per failed attempt and raises
    InfrastructureUnavailable after connect_timeout_s instead of hanging."""
    bus = KafkaBus("127.0.0.1:1", partitions=1, replication=1, connect_timeout_s=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(InfrastructureUnavailable, match=r"127\.0\.0\.1:1 unreachable after"),
    ):
        await bus.start()
    assert loop.time() - started < 10
    retries = [e for e in logs if e["event"] == "kafka unreachable; retrying"]
    assert len(retries) >= 2
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    await bus.close()


class _FailingFirst:
    """A librdkafka call that fails with `codes`, one per call, then answers."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.codes:
            code = self.codes.pop(0)
            raise KafkaException(KafkaError(code, "broker said no"))
        return "done"


async def test_a_transient_kafka_failure_is_retried_and_a_lasting_one_is_translated() -> None:
    """A request lost with its broker handle (as the admin client's CreateTopics was once,
    when the bootstrap connection was replaced) is sent again after a backoff; an error
    that is not transient comes out as a StokerError at once."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    lost_twice = _FailingFirst(KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT)
    with structlog.testing.capture_logs() as logs:
        assert await retry_transient(lost_twice, "ensure_topics", 30, sleep=sleep) == "done"
    assert lost_twice.calls == 3
    assert waits == [0.2, 0.4]
    assert [e["attempt"] for e in logs if e["event"] == "kafka request failed; retrying"] == [1, 2]

    refused = _FailingFirst(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(StokerError, match="ensure_topics failed") as caught:
        await retry_transient(refused, "ensure_topics", 30, sleep=sleep)
    assert not isinstance(caught.value, InfrastructureUnavailable)
    assert refused.calls == 1

    always_lost = _FailingFirst(*[KafkaError._DESTROY_BROKER] * 100)
    with pytest.raises(InfrastructureUnavailable, match="_DESTROY_BROKER"):
        await retry_transient(always_lost, "ensure_topics", 0.0, sleep=sleep)
    assert always_lost.calls == 1


class _Message:
    """What the Kafka member reads of a librdkafka message."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"{self._offset}".encode()

    def headers(self) -> None:
        return None


class _ThreadRecordingConsumer:
    """A stand-in for librdkafka's consumer: hands out queued messages and records the
    thread of every call."""

    def __init__(self) -> None:
        self.queued: list[_Message] = []
        self.threads: list[int] = []

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        self.threads.append(threading.get_ident())
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def poll(self, timeout: float) -> _Message | None:
        self.threads.append(threading.get_ident())
        return self.queued.pop(0) if self.queued else None

    def close(self) -> None:
        self.threads.append(threading.get_ident())


async def test_a_kafka_member_takes_held_records_on_the_loop_only_while_its_thread_is_idle() -> (
    None
):
    """ADR 0017: records librdkafka holds are fetched on the event loop, but never while a
    call is in hand on the member's thread: the consumer is called from one thread at a
    time, and the fetch then waits its turn on that thread."""
    member = KafkaBus("127.0.0.1:1").source("g", ["t"])
    consumer = _ThreadRecordingConsumer()
    member._consumer = consumer  # type: ignore[assignment]
    loop_thread = threading.get_ident()

    busy: concurrent.futures.Future[None] = concurrent.futures.Future()
    member._last_on_thread = busy  # a call still in hand on the member's thread
    consumer.queued = [_Message(0)]
    assert [r.offset for r in await member.fetch(10, 1.0)] == [0]
    assert consumer.threads
    assert loop_thread not in consumer.threads

    consumer.threads.clear()
    consumer.queued = [_Message(1), _Message(2)]
    assert [r.offset for r in await member.fetch(10, 1.0)] == [1, 2]
    assert consumer.threads == [loop_thread]
    await member.close()
