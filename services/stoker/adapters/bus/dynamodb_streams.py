"""An EventBus whose records travel through the job table's DynamoDB Stream (serverless).

Publishing writes an event item (pk `EVT#<topic>#<key>`, a sortable unique sk, the record
bytes) into the job table; the DynamoDB store's outbox writes the same kind of item inside
its transactions, so those events flow through the same stream. All items of one key share a
partition key and so a stream shard, which keeps per-key order.

Reading: a record source walks the stream's shards (parents before children), keeps only
INSERTs of event items of its topics and maps each shard to a partition (a stable hash of the
shard id) and each record to an offset (its sequence number minus the shard's starting one,
so offsets stay small enough for 64-bit consumers). Consumer-group positions live in a
checkpoint table, one item per (group, shard, topic), written only by the holder of the
group's lease.

One active member per group: a lease item with an expiry. Other members of the group wait
(their fetches return nothing) until the holder closes or its lease runs out; a member that
died is replaced after at most `lease_ttl_s`. Records it fetched but did not commit are read
again by the next holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from stoker.adapters.aws import (
    AwsClients,
    AwsRequestRejected,
    AwsUnavailable,
    PartlyUnprocessed,
    call,
    logged_retries,
)
from stoker.adapters.store import layout
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.events import CloudEvent
from stoker.core.retry import RetryPolicy
from stoker.core.store_rules import SortableIds
from stoker.ports.bus import BusRecord, RecordSource, TopicPartition
from stoker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

log = structlog.get_logger("stoker.adapters.bus.dynamodb_streams")

BATCH_WRITE_MAX = 25
UNPROCESSED_RETRY = RetryPolicy(
    initial_delay_s=0.1, multiplier=2, max_delay_s=2.0, jitter=0.5, max_attempts=8
)
"""Items a BatchWriteItem left unprocessed (DynamoDB throttled part of the batch) are sent
again this way; AWS advises a backoff."""
GET_RECORDS_MAX = 1000
SHARD_REFRESH_S = 10.0
SEQUENCE_MIN_DIGITS = 21
"""DynamoDB sequence numbers are 21 to 40 digits; shorter ones are zero-padded."""


def partition_of(shard_id: str) -> int:
    """A shard's partition number: stable for its id in every process and after restarts."""
    return zlib.crc32(shard_id.encode("utf-8")) & 0x7FFFFFFF


def sequence_text(number: int) -> str:
    return str(number).zfill(SEQUENCE_MIN_DIGITS)


class DynamoDbStreamsBus:
    """The `EventBus` of the serverless variant. `start()` creates the tables it needs."""

    def __init__(
        self,
        settings: Settings,
        *,
        table_prefix: str | None = None,
        lease_ttl_s: float = 10.0,
        poll_interval_s: float = 0.25,
    ) -> None:
        if lease_ttl_s <= 0:
            raise ValueError(f"lease_ttl_s must be > 0, got {lease_ttl_s}")
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        prefix = table_prefix or settings.dynamodb_table_prefix
        self.table = layout.job_table_name(prefix)
        self.checkpoint_table = layout.checkpoint_table_name(prefix)
        self._settings = settings
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        self._clients: AwsClients | None = None
        self._db: DynamoDBClient | None = None
        self._streams: DynamoDBStreamsClient | None = None
        self._stream_arn: str | None = None
        self._ids = SortableIds()

    async def start(self) -> None:
        if self._db is not None:
            return
        self._clients = AwsClients(self._settings)
        try:
            self._db = await self._clients.dynamodb()
            self._streams = await self._clients.dynamodb_streams()
            self._stream_arn = await layout.ensure_job_table(self._db, self.table)
            await layout.ensure_checkpoint_table(self._db, self.checkpoint_table)
        except BaseException:
            await self.close()
            raise
        log.info("dynamodb streams bus ready", table=self.table, stream=self._stream_arn)

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
        self._clients = None
        self._db = self._streams = None
        self._stream_arn = None

    @property
    def db(self) -> DynamoDBClient:
        if self._db is None:
            raise StokerError("the DynamoDB Streams bus is not started; call start() first")
        return self._db

    @property
    def streams(self) -> DynamoDBStreamsClient:
        if self._streams is None:
            raise StokerError("the DynamoDB Streams bus is not started; call start() first")
        return self._streams

    @property
    def stream_arn(self) -> str:
        if self._stream_arn is None:
            raise StokerError("the DynamoDB Streams bus is not started; call start() first")
        return self._stream_arn

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Topics are implicit: an event item names its topic."""

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_raw(topic, event.subject, event.to_json())

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        # Per-key order: stream order follows write order within a key, and BatchWriteItem
        # does not order its items, so a batch never holds two events of one key. Round r
        # writes the r-th event of every key; the next round starts when it is durable.
        by_key: dict[str, list[bytes]] = defaultdict(list)
        for event in events:
            by_key[event.subject].append(event.to_json())
        rounds = max((len(values) for values in by_key.values()), default=0)
        for index in range(rounds):
            items = [
                layout.event_item(topic, key, values[index], self._ids.next(), pending=False)
                for key, values in by_key.items()
                if index < len(values)
            ]
            chunks = [items[i : i + BATCH_WRITE_MAX] for i in range(0, len(items), BATCH_WRITE_MAX)]
            await asyncio.gather(*(self._write_batch(topic, chunk) for chunk in chunks))

    async def _write_batch(self, topic: str, items: list[dict[str, Any]]) -> None:
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items]

        async def write() -> None:
            # Each try sends only what the one before left unprocessed.
            nonlocal requests
            response = await call(
                f"publish to {topic}",
                lambda: self.db.batch_write_item(RequestItems={self.table: requests}),
            )
            requests = list(response.get("UnprocessedItems", {}).get(self.table, []))
            if requests:
                raise PartlyUnprocessed(f"publish to {topic}: {len(requests)} items unprocessed")

        await UNPROCESSED_RETRY.call(
            write,
            retry_on=lambda error: isinstance(error, PartlyUnprocessed),
            before_sleep=logged_retries("batch write left items unprocessed; retrying"),
        )

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        item = layout.event_item(topic, key, value, self._ids.next(), pending=False)
        await call(f"publish to {topic}", lambda: self.db.put_item(TableName=self.table, Item=item))

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        # GetRecords returns what a shard holds at once: `background` changes nothing.
        return StreamSource(self, group, topics)


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    start: int
    partition: int
    iterator: str | None = None
    opened: bool = False
    finished: bool = False
    last_sequence: str | None = None
    """The last record read from this shard (delivered or skipped), to reopen after it."""


class StreamSource:
    """One member of a consumer group reading the stream; see the module docstring."""

    def __init__(self, bus: DynamoDbStreamsBus, group: str, topics: Sequence[str]) -> None:
        self._bus = bus
        self._group = group
        self._topics = frozenset(topics)
        self._member = uuid.uuid4().hex
        self._lease_until = 0.0
        self._shards: dict[str, _Shard] = {}
        self._by_partition: dict[int, str] = {}
        self._checkpoints: dict[tuple[str, str], int] = {}
        self._shards_read_at = 0.0
        self._closed = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._log = log.bind(group=group, member=self._member[:8])

    # -- lease ----------------------------------------------------------------------------

    def _lease_key(self) -> dict[str, Any]:
        return {"pk": {"S": f"GROUP#{self._group}"}, "sk": {"S": "LEASE"}}

    async def _hold_lease(self) -> bool:
        """True while this member holds the group's lease; takes it when it is free.

        Once taken, a heartbeat task renews it every third of its TTL, so a long batch in
        the handler does not let it lapse; a member that dies stops renewing and loses it.
        """
        if self._lease_until and time.time() < self._lease_until:
            return True
        had_it = bool(self._lease_until)
        if not await self._put_lease():
            if had_it:
                self._log.warning("lease lost; dropping uncommitted reads")
            self._forget()
            return False
        if not had_it:
            self._log.info("lease taken", lease_ttl_s=self._bus.lease_ttl_s)
            self._forget_positions()
            await self._load_checkpoints()
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._keep_lease())
            self._heartbeat.add_done_callback(self._heartbeat_ended)
        return True

    async def _put_lease(self) -> bool:
        """Take or renew the lease; False when another live member holds it."""
        now = time.time()
        expires = now + self._bus.lease_ttl_s
        try:
            await call(
                "take lease",
                lambda: self._bus.db.put_item(
                    TableName=self._bus.checkpoint_table,
                    Item={
                        **self._lease_key(),
                        "holder": {"S": self._member},
                        "expires_ms": {"N": str(int(expires * 1000))},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR holder = :me"
                    " OR expires_ms < :now",
                    ExpressionAttributeValues={
                        ":me": {"S": self._member},
                        ":now": {"N": str(int(now * 1000))},
                    },
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            return False
        self._lease_until = expires
        return True

    async def _keep_lease(self) -> None:
        while self._lease_until and not self._closed:
            await asyncio.sleep(self._bus.lease_ttl_s / 3)
            if self._closed:
                return
            try:
                renewed = await self._put_lease()
            except StokerError as exc:
                # Keep trying until the lease runs out; fetch then notices and stops reading.
                self._log.warning("lease renewal failed; retrying", reason=str(exc))
                continue
            if not renewed:
                self._log.warning("lease lost; dropping uncommitted reads")
                self._forget()
                return

    def _heartbeat_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Never silent: the next fetch retakes the lease or reports why it cannot.
            self._log.error("lease heartbeat crashed", reason=repr(task.exception()))
            self._lease_until = 0.0

    def _forget(self) -> None:
        """Drop the lease and read positions: the next holder resumes from checkpoints."""
        self._lease_until = 0.0
        self._forget_positions()

    def _forget_positions(self) -> None:
        self._shards.clear()
        self._by_partition.clear()
        self._checkpoints.clear()
        self._shards_read_at = 0.0

    async def _load_checkpoints(self) -> None:
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self._bus.checkpoint_table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :c)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": f"GROUP#{self._group}"},
                    ":c": {"S": "CKPT#"},
                },
                "ConsistentRead": True,
            }
            if start:
                request["ExclusiveStartKey"] = start
            response = await self._aws("load checkpoints", self._bus.db.query, request)
            for item in response.get("Items", []):
                shard_id, topic = item["shard"]["S"], item["topic"]["S"]
                if topic in self._topics:
                    self._checkpoints[(shard_id, topic)] = int(item["next_offset"]["N"])
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    # -- reading --------------------------------------------------------------------------

    async def fetch(self, max_records: int, timeout_s: float) -> Sequence[BusRecord]:
        if self._closed:
            raise StokerError("this record source is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while True:
            if await self._hold_lease():
                records = await self._poll(max(1, max_records))
                if records:
                    return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            # The stream has no long poll: wait a little between reads (this is the adapter's
            # polling cadence, bounded by the caller's timeout).
            await asyncio.sleep(min(self._bus.poll_interval_s, remaining))

    async def _poll(self, max_records: int) -> list[BusRecord]:
        now = time.monotonic()
        if not self._shards or now - self._shards_read_at > SHARD_REFRESH_S:
            await self._refresh_shards()
            self._shards_read_at = now
        records: list[BusRecord] = []
        for shard in list(self._shards.values()):
            if len(records) >= max_records:
                break
            if shard.finished or not self._parent_done(shard):
                continue
            records.extend(await self._read_shard(shard, max_records - len(records)))
        return records

    def _parent_done(self, shard: _Shard) -> bool:
        parent = self._shards.get(shard.parent_id or "")
        return parent is None or parent.finished

    async def _refresh_shards(self) -> None:
        start: str | None = None
        while True:
            request: dict[str, Any] = {"StreamArn": self._bus.stream_arn}
            if start:
                request["ExclusiveStartShardId"] = start
            response = await self._aws(
                "describe stream", self._bus.streams.describe_stream, request
            )
            description = response["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self._shards:
                    continue
                partition = partition_of(shard_id)
                self._shards[shard_id] = _Shard(
                    shard_id=shard_id,
                    parent_id=shard.get("ParentShardId"),
                    start=int(shard["SequenceNumberRange"]["StartingSequenceNumber"]),
                    partition=partition,
                )
                self._by_partition[partition] = shard_id
            start = description.get("LastEvaluatedShardId")
            if not start:
                return

    async def _open(self, shard: _Shard) -> None:
        """Position a new iterator: after the last record read, else after the group's
        checkpoint, else at the oldest record the stream still has."""
        after: str | None = shard.last_sequence
        if after is None:
            committed = [self._checkpoints.get((shard.shard_id, t)) for t in self._topics]
            if committed and all(c is not None and c > 0 for c in committed):
                first_unread = min(c for c in committed if c is not None)
                after = sequence_text(shard.start + first_unread - 1)
        request: dict[str, Any] = {
            "StreamArn": self._bus.stream_arn,
            "ShardId": shard.shard_id,
            "ShardIteratorType": "TRIM_HORIZON",
        }
        if after is not None:
            request |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        try:
            response = await call(
                "get shard iterator", lambda: self._bus.streams.get_shard_iterator(**request)
            )
        except AwsRequestRejected as exc:
            if exc.code not in {"ValidationException", "TrimmedDataAccessException"}:
                raise
            # The position is gone (trimmed) or was never a record: read from the oldest
            # record; the per-topic checkpoints still filter out what was committed.
            self._log.info("reopening shard from its oldest record", shard=shard.shard_id)
            request = {key: request[key] for key in ("StreamArn", "ShardId")}
            request["ShardIteratorType"] = "TRIM_HORIZON"
            response = await self._aws(
                "get shard iterator", self._bus.streams.get_shard_iterator, request
            )
        shard.iterator = response.get("ShardIterator")
        shard.opened = True
        shard.finished = shard.iterator is None

    async def _read_shard(self, shard: _Shard, wanted: int) -> list[BusRecord]:
        if not shard.opened:
            await self._open(shard)
        if shard.iterator is None:
            shard.finished = True
            return []
        iterator = shard.iterator
        try:
            response = await call(
                "get records",
                lambda: self._bus.streams.get_records(
                    ShardIterator=iterator, Limit=min(GET_RECORDS_MAX, wanted)
                ),
            )
        except AwsRequestRejected as exc:
            code = exc.code
            if code in {"ExpiredIteratorException", "TrimmedDataAccessException"}:
                shard.opened = False  # reopened at the next poll, after the last record read
                if code == "TrimmedDataAccessException":
                    shard.last_sequence = None
                return []
            if code == "ResourceNotFoundException":
                shard.finished = True
                return []
            raise
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.finished = True
            self._log.info("shard fully read", shard=shard.shard_id)
        records: list[BusRecord] = []
        for raw in response.get("Records", []):
            sequence = raw["dynamodb"]["SequenceNumber"]
            shard.last_sequence = sequence
            record = self._record(shard, raw)
            if record is not None:
                records.append(record)
        return records

    def _record(self, shard: _Shard, raw: Mapping[str, Any]) -> BusRecord | None:
        if raw.get("eventName") != "INSERT":
            return None
        image = raw["dynamodb"].get("NewImage", {})
        if image.get("kind", {}).get("S") != layout.KIND_EVENT:
            return None
        topic = image["topic"]["S"]
        if topic not in self._topics:
            return None
        offset = int(raw["dynamodb"]["SequenceNumber"]) - shard.start
        if offset < self._checkpoints.get((shard.shard_id, topic), 0):
            return None  # committed by the group already
        return BusRecord(
            topic=topic,
            partition=shard.partition,
            offset=offset,
            key=image["key"]["S"],
            value=bytes(image["value"]["B"]),
        )

    # -- committing -----------------------------------------------------------------------

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        if not positions:
            return
        updates: list[dict[str, Any]] = []
        committed: dict[tuple[str, str], int] = {}
        for (topic, partition), next_offset in positions.items():
            shard_id = self._by_partition.get(partition)
            if shard_id is None:
                raise StokerError(f"partition {partition} was not read by this member")
            committed[(shard_id, topic)] = next_offset
            updates.append(
                {
                    "Put": {
                        "TableName": self._bus.checkpoint_table,
                        "Item": {
                            "pk": {"S": f"GROUP#{self._group}"},
                            "sk": {"S": f"CKPT#{shard_id}#{topic}"},
                            "shard": {"S": shard_id},
                            "topic": {"S": topic},
                            "next_offset": {"N": str(next_offset)},
                        },
                    }
                }
            )
        lease_check = {
            "ConditionCheck": {
                "TableName": self._bus.checkpoint_table,
                "Key": self._lease_key(),
                "ConditionExpression": "holder = :me",
                "ExpressionAttributeValues": {":me": {"S": self._member}},
            }
        }
        # Checkpoints only count while this member holds the lease: the condition check in
        # the same transaction stops a member that lost it from moving the group's position.
        for start in range(0, len(updates), 99):
            items = [lease_check, *updates[start : start + 99]]
            try:
                await call(
                    "commit",
                    lambda items=items: self._bus.db.transact_write_items(TransactItems=items),  # type: ignore[misc]
                )
            except (AwsRequestRejected, AwsUnavailable) as exc:
                # Cancelled: the lease check failed, or the transaction collided with this
                # member's own lease renewal. Either way the positions are not trusted.
                if exc.code == "TransactionCanceledException":
                    self._forget()
                    raise InfrastructureUnavailable(
                        f"group {self._group}: lease lost before commit; "
                        "records will be redelivered"
                    ) from exc
                raise
        for (shard_id, topic), next_offset in committed.items():
            self._checkpoints[(shard_id, topic)] = next_offset

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._lease_until:
            try:
                await call(
                    "release lease",
                    lambda: self._bus.db.delete_item(
                        TableName=self._bus.checkpoint_table,
                        Key=self._lease_key(),
                        ConditionExpression="holder = :me",
                        ExpressionAttributeValues={":me": {"S": self._member}},
                    ),
                )
            except AwsRequestRejected as exc:
                if exc.code != "ConditionalCheckFailedException":
                    raise
        self._forget()

    async def _aws(self, what: str, method: Any, request: dict[str, Any]) -> Any:
        return await call(what, lambda: method(**request))
