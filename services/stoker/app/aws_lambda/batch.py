"""A batch of the job table's DynamoDB Stream, as Lambda delivers it, read through the same
`Consumer` every service uses (decode, validate, retry the handler, dead-letter).

The batch stands in for the bus on the reading side: each consumer group gets a source that
hands out the batch's records once and remembers what was committed. Records the handler
could not finish are reported back to Lambda as `batchItemFailures` (the event source mapping
has ReportBatchItemFailures on), so Lambda retries from the earliest of them and, after its
retries, sends the batch's description to the on-failure queue. Publishing (dead letters,
NotificationSent) goes to the real bus: event items in the job table.

Every record of one Lambda batch comes from one stream shard, so the batch is one partition;
a record's offset is its position in the batch (a DynamoDB sequence number does not fit the
64-bit offsets consumers and dead letters carry); its sequence number rides in its headers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from stoker.adapters.store import layout
from stoker.app.aws_lambda.host import Deadline, within
from stoker.bus.consumer import Consumer
from stoker.core.events import CloudEvent
from stoker.ports.bus import BusRecord, EventBus, RecordSource, TopicPartition

log = structlog.get_logger("stoker.app.aws_lambda")

STREAM_SOURCE = "aws:dynamodb"
PARTITION = 0
SEQUENCE_HEADER = "dynamodb-sequence-number"
SLICE = 10
"""Records a source hands out per fetch. A consumer commits after each fetch, so a deadline
that cuts a batch short leaves at most one slice to be delivered again."""


def is_stream_event(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == STREAM_SOURCE for r in records)
    )


class StreamBatch:
    """One invocation's stream records; `bus()` reads them and publishes to `publisher`."""

    def __init__(self, event: Mapping[str, Any], publisher: EventBus) -> None:
        self._publisher = publisher
        self.sequence_numbers: list[str] = []
        self.records: list[BusRecord] = []
        for index, raw in enumerate(event.get("Records") or []):
            sequence, record = _record(index, raw)
            self.sequence_numbers.append(sequence)
            if record is not None:
                self.records.append(record)
        self._sources: list[_BatchSource] = []

    def bus(self) -> EventBus:
        return _BatchBus(self)

    def open_source(self, topics: Sequence[str]) -> RecordSource:
        source = _BatchSource([r for r in self.records if r.topic in set(topics)])
        self._sources.append(source)
        return source

    @property
    def publisher(self) -> EventBus:
        return self._publisher

    def first_unhandled(self) -> int | None:
        """Position in the batch of the earliest record some consumer did not finish."""
        pending = [source.first_unhandled() for source in self._sources]
        found = [index for index in pending if index is not None]
        return min(found) if found else None

    def response(self) -> dict[str, Any]:
        """The answer Lambda reads: retry from the earliest unfinished record, if any."""
        index = self.first_unhandled()
        if index is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": self.sequence_numbers[index]}]}


async def consume(
    batch: StreamBatch, consumers: Sequence[Consumer[Any]], deadline: Deadline
) -> None:
    """Run every consumer over the batch by `deadline`. A consumer that fails or runs out of
    time leaves its unfinished records to `StreamBatch.response`; the others still run, so
    one role's failure does not hold up another's records."""
    for consumer in consumers:
        try:
            finished = await within(_drain(consumer), deadline)
        except Exception as exc:
            log.error("stream batch not finished; Lambda retries it", error=repr(exc))
            continue
        if finished is None:
            log.warning("stream batch ran out of time; Lambda retries the rest")


async def _drain(consumer: Consumer[Any]) -> bool:
    try:
        while await consumer.run_once():
            pass
    finally:
        await consumer.close()
    return True


class _BatchSource:
    """A consumer group's view of the batch: every record once, then nothing."""

    def __init__(self, records: list[BusRecord]) -> None:
        self._records = records
        self._given = 0
        self._committed: dict[TopicPartition, int] = {}

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        batch = self._records[self._given : self._given + max(1, min(max_records, SLICE))]
        self._given += len(batch)
        return batch

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        for tp, next_offset in positions.items():
            self._committed[tp] = max(next_offset, self._committed.get(tp, 0))

    async def close(self) -> None:
        """Nothing to leave: Lambda tracks the stream position."""

    def first_unhandled(self) -> int | None:
        for record in self._records:
            if record.offset >= self._committed.get((record.topic, record.partition), 0):
                return record.offset
        return None


class _BatchBus:
    """The `EventBus` handed to the consumers: reads the batch, publishes for real."""

    def __init__(self, batch: StreamBatch) -> None:
        self._batch = batch

    async def start(self) -> None:
        """The real bus was started by the runtime."""

    async def close(self) -> None:
        """The runtime closes the real bus."""

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Topics are implicit in the job table."""

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self._batch.publisher.publish(topic, event)

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._batch.publisher.publish_many(topic, events)

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._batch.publisher.publish_raw(topic, key, value)

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        return self._batch.open_source(topics)


def _record(index: int, raw: Any) -> tuple[str, BusRecord | None]:
    """(sequence number, the event item as a bus record, or None for any other item)."""
    where = f"Records[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("dynamodb"), dict):
        raise ValueError(f"{where}.dynamodb: a DynamoDB Stream record is required")
    change = raw["dynamodb"]
    sequence = change.get("SequenceNumber")
    if not isinstance(sequence, str) or not sequence:
        raise ValueError(f"{where}.dynamodb.SequenceNumber: a string is required")
    image = change.get("NewImage")
    if raw.get("eventName") != "INSERT" or not isinstance(image, dict):
        return sequence, None
    if _text(image, "kind") != layout.KIND_EVENT:
        return sequence, None
    topic, key = _text(image, "topic"), _text(image, "key")
    if topic is None or key is None:
        raise ValueError(f"{where}.dynamodb.NewImage: an event item needs topic and key strings")
    value = image.get("value", {}).get("B") if isinstance(image.get("value"), dict) else None
    return sequence, BusRecord(
        topic=topic,
        partition=PARTITION,
        offset=index,
        key=key,
        value=_binary(value, f"{where}.dynamodb.NewImage.value.B"),
        headers={SEQUENCE_HEADER: sequence},
    )


def _text(image: Mapping[str, Any], name: str) -> str | None:
    attribute = image.get(name)
    value = attribute.get("S") if isinstance(attribute, dict) else None
    return value if isinstance(value, str) else None


def _binary(value: Any, where: str) -> bytes:
    # Lambda's JSON carries binary attributes in base64; botocore hands them over decoded.
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError(f"{where}: a base64 binary value is required")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{where}: not base64: {exc}") from exc
