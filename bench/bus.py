"""Event bus round trip: publish N events and consume them through each adapter.

For every adapter the same pre-built CloudEvents are published in batches of 1,000 with
`publish_many` while one group member fetches and commits them (`RecordSource.fetch` +
`commit`, the calls `Consumer` makes). The clock runs from the first publish to the commit
of the last record; the group has joined before (a warm-up record), so joining is not
timed. In the same run, bare confluent-kafka does the same work on the same broker: an
idempotent `acks=all` producer (linger 2 ms, murmur2 partitioner, as the adapter) producing
each batch and flushing until every delivery report is in, one group member with
auto-commit off doing `consume` + a synchronous `commit` of explicit offsets, and the same
`CloudEvent.to_json()` bytes. The Kafka adapter's rate over bare confluent-kafka's is the
figure to watch (target >= 0.8).

    .venv/bin/python bench/bus.py --messages 20000 --kafka-bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoker.adapters.bus import KafkaBus, SqliteLogBus
from stoker.adapters.bus.dynamodb_streams import DynamoDbStreamsBus
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobStatus
from stoker.ports.bus import BusRecord, EventBus
from stoker.settings import Settings

BATCH = 1000
BARE = "bare confluent-kafka"
STALL_S = 60.0
"""A transport that delivers nothing for this long is reported as stalled, not waited on."""


class Stalled(Exception):
    def __init__(self, received: int, total: int) -> None:
        super().__init__(f"stalled at {received:,}/{total:,}")


console = Console(width=130)


@dataclass(frozen=True)
class Args:
    messages: int
    kafka_bootstrap: str
    dynamodb_endpoint: str
    adapters: list[str]
    rounds: int


Opener = Callable[[Args], AbstractAsyncContextManager[EventBus]]


@asynccontextmanager
async def open_sqlite(args: Args) -> AsyncIterator[EventBus]:
    with tempfile.TemporaryDirectory(prefix="stoker-bench-") as folder:
        bus = SqliteLogBus(Path(folder) / "bus.sqlite3")
        await bus.start()
        try:
            yield bus
        finally:
            await bus.close()


@asynccontextmanager
async def open_kafka(args: Args) -> AsyncIterator[EventBus]:
    bus = KafkaBus(args.kafka_bootstrap, partitions=8, replication=1)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def open_dynamodb_streams(args: Args) -> AsyncIterator[EventBus]:
    # DynamoDB Local accepts any credentials but the client insists on having some.
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    settings = Settings(
        dynamodb_endpoint=args.dynamodb_endpoint,
        dynamodb_table_prefix=f"bench-{uuid.uuid4().hex[:10]}",
    )
    bus = DynamoDbStreamsBus(settings)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


ADAPTERS: dict[str, Opener] = {
    "sqlite": open_sqlite,
    "kafka": open_kafka,
    "dynamodb_streams": open_dynamodb_streams,
}


def make_events(count: int) -> list[CloudEvent]:
    now = datetime.now(UTC)
    return [
        CloudEvent.wrap(
            JobStatusChanged(
                job_id=f"bench-{i % 64}",
                owner="bench",
                version=i + 1,
                from_status=JobStatus.NEW,
                to_status=JobStatus.LAUNCHING,
                attempt=0,
            ),
            time=now,
        )
        for i in range(count)
    ]


async def adapter_round_trip(
    opener: Opener, args: Args, events: list[CloudEvent], progress: Progress, label: str
) -> float:
    """Seconds for the adapter to publish and deliver (fetched and committed) every event."""
    task = progress.add_task(label, total=len(events))
    async with opener(args) as bus:
        topic = f"bench-{uuid.uuid4().hex[:10]}"
        await bus.ensure_topics([topic])
        source = bus.source(f"bench-{uuid.uuid4().hex[:10]}", [topic])
        try:
            await bus.publish(topic, events[0])
            warm: list[BusRecord] = []
            joined_by = time.perf_counter() + STALL_S
            while not warm:
                if time.perf_counter() > joined_by:
                    raise Stalled(0, 1)
                warm = list(await source.fetch(10, 1.0))
            await source.commit({(r.topic, r.partition): r.offset + 1 for r in warm})

            async def produce() -> None:
                for start in range(0, len(events), BATCH):
                    await bus.publish_many(topic, events[start : start + BATCH])

            started = last = time.perf_counter()
            producer = asyncio.create_task(produce())
            received = 0
            try:
                while received < len(events):
                    try:
                        # A fetch must honour its 1 s timeout; one that hangs is a stall too.
                        records = await asyncio.wait_for(source.fetch(BATCH, 1.0), STALL_S)
                    except TimeoutError:
                        raise Stalled(received, len(events)) from None
                    if records:
                        positions = {(r.topic, r.partition): r.offset + 1 for r in records}
                        await source.commit(positions)
                        received += len(records)
                        last = time.perf_counter()
                        progress.update(task, completed=received)
                    elif time.perf_counter() - last > STALL_S:
                        raise Stalled(received, len(events))
                await producer
            finally:
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            return time.perf_counter() - started
        finally:
            await source.close()


async def bare_confluent_kafka_round_trip(
    args: Args, events: list[CloudEvent], progress: Progress, label: str
) -> float:
    """The same work with confluent-kafka alone, as a well-written application would do it."""
    topic = f"bench-bare-{uuid.uuid4().hex[:10]}"
    # Set-up, not measured: the bus's topic creation retries a broker that is still settling.
    await KafkaBus(args.kafka_bootstrap, partitions=8, replication=1).ensure_topics([topic])
    # Its calls block (in C, without the GIL), so the whole run goes to a thread.
    return await asyncio.to_thread(_bare_confluent_kafka, args, topic, events, progress, label)


def _bare_confluent_kafka(
    args: Args, topic: str, events: list[CloudEvent], progress: Progress, label: str
) -> float:
    task = progress.add_task(label, total=len(events))
    producer = Producer(
        {
            "bootstrap.servers": args.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "partitioner": "murmur2_random",
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": args.kafka_bootstrap,
            "group.id": f"bench-bare-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        _produce_acknowledged(producer, topic, events[:1])
        while not _records(consumer.consume(BATCH, 1.0)):
            pass
        consumer.commit(asynchronous=False)

        def produce() -> None:
            for start in range(0, len(events), BATCH):
                _produce_acknowledged(producer, topic, events[start : start + BATCH])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as pool:
            sending = pool.submit(produce)
            received = 0
            while received < len(events):
                if sending.done():
                    sending.result()  # a failed producer would leave this loop waiting
                records = _records(consumer.consume(BATCH, 1.0))
                if records:
                    consumer.commit(offsets=_next_positions(topic, records), asynchronous=False)
                    received += len(records)
                    progress.update(task, completed=received)
            sending.result()
        return time.perf_counter() - started
    finally:
        consumer.close()


def _produce_acknowledged(producer: Producer, topic: str, events: Sequence[CloudEvent]) -> None:
    """Produce a batch and wait until every record of it is acknowledged."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for event in events:
        producer.produce(topic, event.to_json(), key=event.subject.encode(), on_delivery=delivered)
    # flush serves the delivery reports and returns once none is outstanding.
    producer.flush()
    if failures:
        raise RuntimeError(f"{len(failures)} records not acknowledged: {failures[0]}")


def _next_positions(topic: str, records: list[Message]) -> list[TopicPartition]:
    """Per partition, the offset after its last record: the position to commit."""
    after: dict[int, int] = {}
    for m in records:
        partition, offset = m.partition(), m.offset()
        # Records carry both; only error events lack them (the stubs allow None).
        assert partition is not None
        assert offset is not None
        after[partition] = offset + 1
    return [TopicPartition(topic, p, o) for p, o in after.items()]


def _records(messages: list[Message]) -> list[Message]:
    """The records among what `consume` returned; the rest are events such as a topic not
    created yet, which librdkafka handles itself."""
    return [m for m in messages if m.error() is None]


async def main(args: Args) -> None:
    events = make_events(args.messages)
    timings: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for round_no in range(1, args.rounds + 1):
            for name in args.adapters:
                if name in failures:
                    continue
                label = f"{name} (round {round_no})"
                try:
                    seconds = await adapter_round_trip(
                        ADAPTERS[name], args, events, progress, label
                    )
                except Stalled as exc:
                    failures[name] = f"round {round_no}: {exc}"
                    continue
                timings.setdefault(name, []).append(seconds)
            if "kafka" in args.adapters:
                label = f"{BARE} (round {round_no})"
                seconds = await bare_confluent_kafka_round_trip(args, events, progress, label)
                timings.setdefault(BARE, []).append(seconds)

    table = Table(title=f"Event bus round trip, {args.messages:,} messages (median of rounds)")
    table.add_column("transport")
    table.add_column("seconds (median)", justify="right")
    table.add_column("every round (s)", justify="right")
    table.add_column("messages/s", justify="right")
    table.add_column(f"vs {BARE}", justify="right")
    bare = statistics.median(timings[BARE]) if BARE in timings else None
    for name, runs in timings.items():
        seconds = statistics.median(runs)
        ratio = f"{bare / seconds:.2f}" if bare and name != BARE else "-"
        if name == "kafka" and bare:
            verdict = "meets" if bare / seconds >= 0.8 else "MISSES"
            ratio = f"{ratio} ({verdict} the 0.8 target)"
        rounds = " ".join(f"{r:.2f}" for r in runs)
        table.add_row(name, f"{seconds:.2f}", rounds, f"{args.messages / seconds:,.0f}", ratio)
    for name, why in failures.items():
        table.add_row(name, "-", "-", "-", f"no result ({why})")
    console.print(table)


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="events per run")
    parser.add_argument("--kafka-bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--dynamodb-endpoint", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--adapters",
        default="sqlite,kafka,dynamodb_streams",
        help=f"comma-separated, from {', '.join(ADAPTERS)}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per transport")
    ns = parser.parse_args()
    adapters = [a.strip() for a in ns.adapters.split(",") if a.strip()]
    unknown = [a for a in adapters if a not in ADAPTERS]
    if unknown:
        parser.error(f"unknown adapter(s) {unknown}; choose from {list(ADAPTERS)}")
    if ns.messages < 1:
        parser.error(f"--messages must be >= 1, got {ns.messages}")
    return Args(ns.messages, ns.kafka_bootstrap, ns.dynamodb_endpoint, adapters, ns.rounds)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
