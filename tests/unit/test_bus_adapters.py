"""Adapter behaviour outside the shared contract: durability, start-up and error translation."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException

from stoker.adapters.bus import KafkaBus, SqliteLogBus, partition_for
from stoker.adapters.bus.kafka import KafkaConfig, KafkaSecurity
from stoker.adapters.bus.kafka.broker import retry_transient
from stoker.app.runtime import build_bus
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.retry import RetryPolicy
from stoker.ports.bus import BusRecord
from stoker.settings import Mode, Settings

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
    """Each member's consumer gets the wait of its kind; the composition root takes both
    from Settings."""
    bus = KafkaBus("127.0.0.1:1", fetch_max_wait_ms=7, background_fetch_max_wait_ms=70)
    assert bus.source("eager", ["t"]).consumer_config()["fetch.wait.max.ms"] == 7
    assert bus.source("lazy", ["t"], background=True).consumer_config()["fetch.wait.max.ms"] == 70
    settings = Settings(
        mode=Mode.KAFKA,
        topic_prefix="",
        kafka_bootstrap="127.0.0.1:1",
        kafka_fetch_max_wait_ms=3,
        kafka_background_fetch_max_wait_ms=300,
    )
    configured = build_bus(settings)
    assert isinstance(configured, KafkaBus)
    assert configured.source("eager", ["t"]).consumer_config()["fetch.wait.max.ms"] == 3
    lazy = configured.source("lazy", ["t"], background=True).consumer_config()
    assert lazy["fetch.wait.max.ms"] == 300
    assert lazy["group.id"] == "lazy"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bootstrap": "no-port"}, "bootstrap must be host:port"),
        ({"partitions": 0}, "partitions must be >= 1, got 0"),
        (
            {"heartbeat_interval_ms": 5_000},
            r"heartbeat_interval_ms \(5000\) must be at most a third",
        ),
        ({"connect_timeout_s": 0}, "connect_timeout_s must be > 0, got 0"),
        (
            {"client_settings": {"enable.auto.commit": True}},
            "may not set \\['enable.auto.commit'\\]",
        ),
    ],
)
def test_kafka_config_refuses_bad_values_and_names_them(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaConfig(**{"bootstrap": "127.0.0.1:9092", **fields})


def test_kafka_config_keeps_client_settings_out_of_its_repr() -> None:
    """Further librdkafka settings and the SASL credentials reach every client, not the
    logs."""
    config = KafkaConfig(
        "127.0.0.1:9092",
        client_settings={"ssl.engine.id": "hunter1"},
        security=KafkaSecurity(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="stoker",
            sasl_password="hunter2",
        ),
    )
    assert "hunter1" not in repr(config)
    assert "hunter2" not in repr(config)
    assert config.librdkafka()["ssl.engine.id"] == "hunter1"
    assert config.librdkafka()["sasl.password"] == "hunter2"


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
    when the bootstrap connection was replaced) is sent again after the config's backoff;
    an error that is not transient comes out as a StokerError at once, and a transient one
    that outlasts the policy as InfrastructureUnavailable."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    config = KafkaConfig("127.0.0.1:1")
    lost_twice = _FailingFirst(KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT)
    with structlog.testing.capture_logs() as logs:
        assert await retry_transient(lost_twice, "ensure_topics", config, sleep=sleep) == "done"
    assert lost_twice.calls == 3
    assert waits == [0.2, 0.4]
    assert [e["attempt"] for e in logs if e["event"] == "kafka request failed; retrying"] == [1, 2]

    refused = _FailingFirst(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(StokerError, match="ensure_topics failed") as caught:
        await retry_transient(refused, "ensure_topics", config, sleep=sleep)
    assert not caught.value.retriable
    assert refused.calls == 1

    three_tries = KafkaConfig(
        "127.0.0.1:1", broker_retry=RetryPolicy(initial_delay_s=0.2, jitter=0, max_attempts=3)
    )
    always_lost = _FailingFirst(*[KafkaError._DESTROY_BROKER] * 100)
    with pytest.raises(InfrastructureUnavailable, match="_DESTROY_BROKER"):
        await retry_transient(always_lost, "ensure_topics", three_tries, sleep=sleep)
    assert always_lost.calls == 3


class _Message:
    """What a Kafka member reads of a librdkafka message."""

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


class _OneCallAtATime:
    """A stand-in for librdkafka's consumer, which must not be called from two threads at
    once: it hands out queued messages and counts calls that began while another was in
    progress. `poll` waits for `release` while `hold_polls` is set."""

    def __init__(self, _settings: dict[str, Any]) -> None:
        self.queued: list[_Message] = []
        self.overlapping_calls = 0
        self.hold_polls = False
        self.polling = threading.Event()
        self.release = threading.Event()
        self._queue_lock = threading.Lock()
        self._in_call = threading.Lock()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        if not self._in_call.acquire(blocking=False):
            self.overlapping_calls += 1
            yield
            return
        try:
            yield
        finally:
            self._in_call.release()

    def queue(self, *offsets: int) -> None:
        with self._queue_lock:
            self.queued += [_Message(o) for o in offsets]

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any) -> None:
        with self._call():
            pass

    def list_topics(self, *, timeout: float) -> object:
        with self._call():
            return {}

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        with self._call(), self._queue_lock:
            taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
            return taken

    def poll(self, timeout: float) -> _Message | None:
        with self._call():
            if self.hold_polls:
                self.polling.set()
                self.release.wait(timeout)
            return None

    def assignment(self) -> list[Any]:
        with self._call():
            return []

    def position(self, partitions: list[Any]) -> list[Any]:
        with self._call():
            return partitions

    def get_watermark_offsets(
        self, partition: Any, timeout: float = 1.0, cached: bool = False
    ) -> tuple[int, int] | None:
        with self._call():
            return None

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> object:
        with self._call():
            return None

    def close(self) -> None:
        with self._call():
            pass


async def test_a_kafka_member_never_overlaps_calls_on_its_consumer() -> None:
    """A fetch given up by its caller may still wait for records on the member's thread;
    the next fetch then waits its turn instead of taking the records librdkafka holds at
    the same time, and hands them over in order."""
    consumers: list[_OneCallAtATime] = []

    def new_consumer(settings: dict[str, Any]) -> _OneCallAtATime:
        consumers.append(_OneCallAtATime(settings))
        return consumers[-1]

    member = KafkaBus("127.0.0.1:1", new_consumer=new_consumer).source("g", ["t"])
    try:
        assert await member.fetch(10, 1.0) == []  # joins; nothing there yet
        (consumer,) = consumers
        consumer.queue(0)
        assert [r.offset for r in await member.fetch(10, 1.0)] == [0]

        consumer.hold_polls = True
        given_up = asyncio.create_task(member.fetch(10, 30.0))
        assert await asyncio.to_thread(consumer.polling.wait, 30.0)
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        consumer.queue(1, 2)
        # The poll in progress ends only after the next fetch has chosen how to fetch.
        asyncio.get_running_loop().call_soon(consumer.release.set)
        assert [r.offset for r in await member.fetch(10, 30.0)] == [1, 2]
    finally:
        await member.close()
    assert consumer.overlapping_calls == 0
