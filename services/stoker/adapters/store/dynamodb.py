"""The production store on DynamoDB (aiobotocore): jobs in a single-table layout, API tokens
in a table of their own (see layout.py; the token operations are `dynamodb_tokens`).

A create or transition is one TransactWriteItems: the job item (conditional on its
version), one history item, the day's trend counters (ADD) and the outbox event items.
Either all land or none. Event items are also what the DynamoDB Streams bus publishes, so in
the serverless variant an outbox event reaches consumers through the table's stream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime
from functools import partial
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
from stoker.adapters.store.dynamodb_slots import DynamoDbSlots
from stoker.adapters.store.dynamodb_tokens import DynamoDbTokens
from stoker.adapters.store.item_size import check_items
from stoker.core.cursors import decode_cursor, encode_cursor, time_key
from stoker.core.errors import JobNotFound, VersionConflict
from stoker.core.events import CloudEvent, decode_event
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.retry import RetryPolicy
from stoker.core.store_rules import (
    SortableIds,
    StoreFailure,
    check_limit,
    check_outbox,
    creation_line,
    event_bytes,
    job_position,
    plan_from_copy,
    plan_transition,
    records_history,
    trend_days,
)
from stoker.core.tokens import TokenRecord
from stoker.core.trends import BILLABLE, Trends, fold, measures
from stoker.ports.store import OutboxEntry, Page
from stoker.settings import Settings
from stoker.telemetry.metrics import StoreTimer

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeysAndAttributesTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

log = structlog.get_logger("stoker.adapters.store.dynamodb")

CONFLICT_RETRY = RetryPolicy(
    initial_delay_s=0.03, multiplier=2, max_delay_s=1.0, jitter=0.5, max_attempts=8
)
"""A transaction cancelled because another one touched one of its items at the same moment
(or throttled) is tried again, as a new transaction, this way. The waits are short: a
collision clears quickly; the jitter keeps two writers from colliding again in step."""

UNPROCESSED_RETRY = CONFLICT_RETRY
"""Keys a BatchGetItem left unprocessed are asked for again this way (AWS advises a
backoff)."""

MARK_CONCURRENCY = 16
BATCH_GET_KEYS = 100
"""Keys per BatchGetItem request: DynamoDB's limit."""


class DynamoDbJobStore:
    """Jobs in one DynamoDB table `<prefix>-jobs`, tokens in `<prefix>-tokens`; created with
    their indexes by `start()`.

    `client` hands the store a DynamoDB client made elsewhere: `start` then makes none, and
    `close` leaves the client to its owner.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        table_prefix: str | None = None,
        client: DynamoDBClient | None = None,
    ) -> None:
        self._settings = settings
        prefix = table_prefix or settings.dynamodb_table_prefix
        self.table = layout.job_table_name(prefix)
        self.tokens = DynamoDbTokens(lambda: self._client, layout.token_table_name(prefix))
        slots = DynamoDbSlots(lambda: self._client, self.table)
        # The CapacityStore operations (slots and leases) are `dynamodb_slots`'.
        self.claim_slots = slots.claim_slots
        self.release_slots = slots.release_slots
        self.held_slots = slots.held_slots
        self.take_lease = slots.take_lease
        self.leases = slots.leases
        self.drop_lease = slots.drop_lease
        self._clients: AwsClients | None = None
        self._given = client
        self._db: DynamoDBClient | None = None
        self._ids = SortableIds()
        self._timer = StoreTimer("dynamodb")
        # Event id -> key of its outbox item, for the events this process wrote or read as
        # pending: the writer marks them by event id right after publishing them, and an
        # item's key (topic, subject, write-order id) is not derivable from the id alone.
        self._outbox_keys: dict[str, tuple[str, str]] = {}

    async def start(self) -> None:
        if self._db is not None:
            return
        try:
            if self._given is not None:
                self._db = self._given
            else:
                self._clients = AwsClients(self._settings)
                self._db = await self._clients.dynamodb()
            await layout.ensure_job_table(self._db, self.table)
            await layout.ensure_team_keys(self._db, self.table)
            await self.tokens.start()
        except BaseException:
            await self.close()
            raise
        log.info("dynamodb job store ready", table=self.table)

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
        self._clients = None
        self._db = None

    @property
    def _client(self) -> DynamoDBClient:
        if self._db is None:
            raise StoreFailure("the DynamoDB store is not started; call start() first")
        return self._db

    async def _call(self, what: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        return await self._timer.timed(what, call(what, operation))

    # -- writes ---------------------------------------------------------------------------

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        check_outbox(outbox)
        line = creation_line(job)
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _job_item(job),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            self._history_put(line),
            *layout.counter_updates(self.table, job.job_id, job.team, measures(None, job, line)),
            *self._outbox_puts(outbox),
        ]
        if await self._write_with_outbox("create", items, outbox, job):
            return await self.get(job.job_id), False
        return job, True

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        check_outbox(outbox)
        # The caller's copy, when it may serve, saves a read (see `plan_from_copy`).
        planned = plan_from_copy(current, job_id, change, expected_version)
        if planned is not None and current is not None:
            before = current
        else:
            before = await self.get(job_id)
            planned = plan_transition(before, change, expected_version)
        updated, line = planned
        counters = layout.counter_updates(
            self.table, job_id, updated.team, measures(before, updated, line)
        )
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _job_item(updated),
                    "ConditionExpression": "#v = :expected",
                    "ExpressionAttributeNames": {"#v": "version"},
                    "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
                }
            },
            *([self._history_put(line)] if records_history(line) else []),
            *counters,
            *self._outbox_puts(outbox),
        ]
        if await self._write_with_outbox("transition", items, outbox, updated):
            actual = await self._version_of(job_id)
            if actual is None:
                raise JobNotFound(job_id)
            raise VersionConflict(job_id, expected_version, actual)
        return updated

    async def _write_with_outbox(
        self,
        what: str,
        items: list[TransactWriteItemTypeDef],
        outbox: Sequence[tuple[str, CloudEvent]],
        job: JobRecord,
    ) -> bool:
        """`_transact`, forgetting the outbox keys again when nothing was written. An item
        over DynamoDB's size limit is refused here (ItemTooLarge naming the field)."""
        written = False
        try:
            check_items((i["Put"]["Item"] for i in items if "Put" in i), job)
            refused = await self._transact(what, items)
            written = not refused
            return refused
        finally:
            if not written:
                for _, event in outbox:
                    self._outbox_keys.pop(event.id, None)

    async def _transact(self, what: str, items: list[TransactWriteItemTypeDef]) -> bool:
        """Run one transaction. True when a condition failed (nothing was written)."""
        try:
            await CONFLICT_RETRY.call(
                partial(self._send, what, items),
                retry_on=_collided,
                before_sleep=logged_retries("transaction conflict; retrying", operation=what),
            )
        except AwsRequestRejected as exc:
            if "ConditionalCheckFailed" in exc.cancellations:
                return True
            raise
        return False

    async def _send(self, what: str, items: list[TransactWriteItemTypeDef]) -> None:
        # One token per try: botocore's retries of a request re-send its token, so a
        # transaction that did commit is not applied twice; a try after a collision is a
        # new transaction.
        token = uuid.uuid4().hex
        await call(
            what,
            lambda: self._client.transact_write_items(
                TransactItems=items, ClientRequestToken=token
            ),
        )

    def _history_put(self, line: Transition) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    "pk": {"S": layout.job_pk(line.job_id)},
                    "sk": {"S": layout.history_sk(line.version)},
                    "kind": {"S": layout.KIND_HISTORY},
                    "line": {"S": line.model_dump_json()},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _outbox_puts(
        self, outbox: Sequence[tuple[str, CloudEvent]]
    ) -> list[TransactWriteItemTypeDef]:
        puts: list[TransactWriteItemTypeDef] = []
        for topic, event in outbox:
            item = layout.event_item(
                topic, event.subject, event_bytes(event), self._ids.next(), pending=True
            )
            self._outbox_keys[event.id] = (item["pk"]["S"], item["sk"]["S"])
            puts.append({"Put": {"TableName": self.table, "Item": item}})
        return puts

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        response = await self._call(
            "get_item",
            lambda: self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": layout.job_pk(job_id)}, "sk": {"S": layout.JOB_SK}},
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        if not item:
            raise JobNotFound(job_id)
        return _record(item)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        ids = list(dict.fromkeys(job_ids))
        chunks = [ids[i : i + BATCH_GET_KEYS] for i in range(0, len(ids), BATCH_GET_KEYS)]
        found: dict[str, JobRecord] = {}
        for items in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            for item in items:
                record = _record(item)
                found[record.job_id] = record
        return found

    async def _batch_get(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """The items of up to 100 jobs; keys left unprocessed are asked for again."""
        keys: list[Any] = [
            {"pk": {"S": layout.job_pk(j)}, "sk": {"S": layout.JOB_SK}} for j in job_ids
        ]
        items: list[dict[str, Any]] = []

        async def read() -> None:
            nonlocal keys
            request: dict[str, KeysAndAttributesTypeDef] = {
                self.table: {"Keys": keys, "ConsistentRead": True}
            }
            response = await self._call(
                "batch_get_item", partial(self._client.batch_get_item, RequestItems=request)
            )
            items.extend(response.get("Responses", {}).get(self.table, []))
            keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            if keys:
                raise PartlyUnprocessed(f"batch_get_item: {len(keys)} keys unprocessed")

        await UNPROCESSED_RETRY.call(
            read,
            retry_on=_unprocessed,
            before_sleep=logged_retries("batch read left keys unprocessed; retrying"),
        )
        return items

    async def _version_of(self, job_id: str) -> int | None:
        response = await self._call(
            "get_item",
            lambda: self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": layout.job_pk(job_id)}, "sk": {"S": layout.JOB_SK}},
                ConsistentRead=True,
                ProjectionExpression="#v",
                ExpressionAttributeNames={"#v": "version"},
            ),
        )
        item = response.get("Item")
        return int(item["version"]["N"]) if item else None

    async def history(self, job_id: str) -> list[Transition]:
        items = await self._query_all(
            "history",
            {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :h)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": layout.job_pk(job_id)},
                    ":h": {"S": "H#"},
                },
                "ConsistentRead": True,
            },
        )
        if not items:
            raise JobNotFound(job_id)
        return [Transition.model_validate_json(item["line"]["S"]) for item in items]

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        check_limit(limit)
        after: str | None = None
        if cursor is not None:
            position = decode_cursor(cursor)
            after = f"{position.get('t')}#{position.get('id')}"
        found: list[JobRecord] = []
        for part in layout.list_partitions(status and status.value, owner, team):
            found.extend(await self._newest(part, after, limit + 1))
        found.sort(key=job_position, reverse=True)
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            created, job_id = job_position(items[-1])
            next_cursor = encode_cursor({"t": created, "id": job_id})
        return Page(items=items, next_cursor=next_cursor)

    async def _newest(
        self, part: layout.ListPartition, after: str | None, count: int
    ) -> list[JobRecord]:
        condition = "#k = :k"
        names = {"#k": part.key_name}
        values: Item = {":k": {"S": part.key_value}}
        if after is not None:
            condition += " AND c_sk < :after"
            values[":after"] = {"S": after}
        request: QueryInputTypeDef = {
            "TableName": self.table,
            "IndexName": part.index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if part.status is not None:
            names["#s"] = "status"
            values[":s"] = {"S": part.status}
            request["FilterExpression"] = "#s = :s"
        items = await self._query_all(f"list_jobs {part.index}", request, limit=count)
        return [_record(item) for item in items]

    async def due(self, now: datetime, limit: int = 100) -> list[JobRecord]:
        check_limit(limit)
        # "$" sorts right after "#", so this bound takes every job due at exactly `now`.
        items = await self._query_all(
            "due",
            {
                "TableName": self.table,
                "IndexName": layout.INDEX_DUE,
                "KeyConditionExpression": "d_pk = :due AND d_sk < :bound",
                "ExpressionAttributeValues": {
                    ":due": {"S": layout.DUE_PARTITION},
                    ":bound": {"S": f"{time_key(now)}$"},
                },
            },
            limit=limit,
        )
        return [_record(item) for item in items]

    async def trends(self, since: datetime, until: datetime, *, team: str | None = None) -> Trends:
        first, last = trend_days(since, until)
        rows: list[tuple[date, str, str, str, int]] = []
        for month in _months(first, last):
            items = await self._query_all(
                "trends",
                {
                    "TableName": self.table,
                    "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {
                        ":pk": {"S": layout.trend_pk(month, team)},
                        ":low": {"S": f"{first.isoformat()}#"},
                        ":high": {"S": f"{last.isoformat()}$"},
                    },
                },
            )
            rows.extend(_counter_row(item, team) for item in items)
        return fold(rows)

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)
        items = await self._query_all(
            "pending_outbox",
            {
                "TableName": self.table,
                "IndexName": layout.INDEX_PENDING,
                "KeyConditionExpression": "p_pk = :p",
                "ExpressionAttributeValues": {":p": {"S": layout.PENDING_PARTITION}},
            },
            limit=limit,
        )
        entries = []
        for item in items:
            event = decode_event(bytes(item["value"]["B"]))
            self._outbox_keys[event.id] = (item["pk"]["S"], item["sk"]["S"])
            entries.append(OutboxEntry(entry_id=event.id, topic=item["topic"]["S"], event=event))
        return entries

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        gate = asyncio.Semaphore(MARK_CONCURRENCY)

        async def mark(entry_id: str) -> None:
            key = self._outbox_keys.get(entry_id)
            if key is None:
                # Written by another process and not read here: its writer or a relay
                # pass (which reads it as pending first) marks it.
                return
            pk, sk = key
            async with gate:
                try:
                    await call(
                        "mark_published",
                        lambda: self._client.update_item(
                            TableName=self.table,
                            Key={"pk": {"S": pk}, "sk": {"S": sk}},
                            UpdateExpression="REMOVE p_pk, p_sk",
                            # Without it, an unknown id would create a stray item.
                            ConditionExpression="attribute_exists(pk)",
                        ),
                    )
                except AwsRequestRejected as exc:
                    if exc.code != "ConditionalCheckFailedException":
                        raise
            self._outbox_keys.pop(entry_id, None)

        await asyncio.gather(*(mark(entry_id) for entry_id in dict.fromkeys(entry_ids)))

    # -- tokens: the token table's own operations -----------------------------------------

    async def put_token(self, token: TokenRecord) -> None:
        await self.tokens.put_token(token)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        return await self.tokens.get_token(token_id)

    async def list_tokens(self) -> list[TokenRecord]:
        return await self.tokens.list_tokens()

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        return await self.tokens.revoke_token(token_id, at)

    async def _query_all(
        self, what: str, request: QueryInputTypeDef, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every item a query matches (or the first `limit`), following LastEvaluatedKey."""
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            page: QueryInputTypeDef = dict(request)  # type: ignore[assignment]
            if limit is not None:
                page["Limit"] = limit - len(items)
            if start is not None:
                page["ExclusiveStartKey"] = start
            response = await self._query_page(what, page)
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if start is None or (limit is not None and len(items) >= limit):
                return items

    async def _query_page(self, what: str, page: QueryInputTypeDef) -> Any:
        return await self._call(what, lambda: self._client.query(**page))


def _job_item(job: JobRecord) -> Item:
    created = f"{time_key(job.created_at)}#{job.job_id}"
    item: Item = {
        "pk": {"S": layout.job_pk(job.job_id)},
        "sk": {"S": layout.JOB_SK},
        "kind": {"S": layout.KIND_JOB},
        "status": {"S": job.status.value},
        "owner": {"S": job.owner},
        "version": {"N": str(job.version)},
        "record": {"S": job.model_dump_json()},
        "s_pk": {"S": layout.status_pk(job.status.value)},
        "o_pk": {"S": layout.owner_pk(job.owner)},
        "os_pk": {"S": layout.owner_status_pk(job.owner, job.status.value)},
        "c_sk": {"S": created},
        **layout.team_keys(job.team, job.owner, job.status.value),
    }
    if job.status is JobStatus.RETRY_SCHEDULED and job.due_at is not None:
        # Sparse: the attribute exists only while a retry waits, so the index holds only those.
        item["d_pk"] = {"S": layout.DUE_PARTITION}
        item["d_sk"] = {"S": f"{time_key(job.due_at)}#{job.job_id}"}
    return item


def _collided(error: BaseException) -> bool:
    """A transaction cancelled by a collision or throttling (not by a failed condition)."""
    return isinstance(error, AwsUnavailable) and error.code == "TransactionCanceledException"


def _unprocessed(error: BaseException) -> bool:
    return isinstance(error, PartlyUnprocessed)


def _record(item: dict[str, Any]) -> JobRecord:
    return JobRecord.model_validate_json(item["record"]["S"])


def _counter_row(item: dict[str, Any], team: str | None) -> tuple[date, str, str, str, int]:
    """(day, team, kind, name, amount) of a counter item; every team's billable counters
    name their team after the instance type."""
    kind, name = item["counter"]["S"], item["name"]["S"]
    owner_team = team or ""
    if team is None and kind == BILLABLE:
        name, _, owner_team = name.rpartition("|")
    return date.fromisoformat(item["day"]["S"]), owner_team, kind, name, int(item["count"]["N"])


def _months(first: date, last: date) -> Iterable[str]:
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield f"{year:04d}-{month:02d}"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
