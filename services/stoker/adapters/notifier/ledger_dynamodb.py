"""The ledger in DynamoDB: one item per entry, conditional writes for every change.

`pending` reads a sparse global secondary index (only pending items carry the
`pending_shard` attribute) and then re-reads those items with a consistent batch get,
because an index lags its table and a just-sent entry must not look pending again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from stoker.adapters.aws import (
    AwsClients,
    AwsRequestRejected,
    PartlyUnprocessed,
    call,
    logged_retries,
)
from stoker.core.retry import RetryPolicy
from stoker.ports.ledger import EntryStatus, LedgerEntry, LedgerFailure
from stoker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

T = TypeVar("T")

INDEX = "pending-index"
SHARD = "p"
"""Notifications are few; one index partition keeps `pending` a single ordered query."""

_BATCH_GET_MAX = 100
UNPROCESSED_RETRY = RetryPolicy(
    initial_delay_s=0.05, multiplier=2, max_delay_s=2.0, jitter=0.5, max_attempts=8
)
"""Keys a BatchGetItem left unprocessed are asked for again this way (AWS advises a
backoff)."""


class DynamoDbLedger:
    def __init__(self, settings: Settings, table: str | None = None) -> None:
        self._clients = AwsClients(settings)
        self._table = table or f"{settings.dynamodb_table_prefix}-notifications"
        self._client: DynamoDBClient | None = None

    @property
    def table(self) -> str:
        return self._table

    async def _db(self) -> DynamoDBClient:
        if self._client is None:
            self._client = await self._clients.dynamodb()
        return self._client

    async def _call(self, what: str, op: Callable[[DynamoDBClient], Awaitable[T]]) -> T:
        db = await self._db()
        return await call(f"ledger {what}", lambda: op(db))

    async def start(self) -> None:
        db = await self._db()
        try:
            await call(
                "ledger create table",
                lambda: db.create_table(
                    TableName=self._table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": "entry_id", "AttributeType": "S"},
                        {"AttributeName": "pending_shard", "AttributeType": "S"},
                        {"AttributeName": "pending_order", "AttributeType": "S"},
                    ],
                    KeySchema=[{"AttributeName": "entry_id", "KeyType": "HASH"}],
                    GlobalSecondaryIndexes=[
                        {
                            "IndexName": INDEX,
                            "KeySchema": [
                                {"AttributeName": "pending_shard", "KeyType": "HASH"},
                                {"AttributeName": "pending_order", "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                    ],
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ResourceInUseException":
                raise
        # botocore's waiter polls until the table is ACTIVE (once a second, a minute at most).
        waiter = db.get_waiter("table_exists")
        await call(
            "ledger wait for table",
            lambda: waiter.wait(
                TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            ),
        )

    async def close(self) -> None:
        await self._clients.close()
        self._client = None

    async def add(self, entry: LedgerEntry) -> bool:
        row = entry.to_row()
        row.update(status=EntryStatus.PENDING.value, message_id=None)
        item = {k: {"S": str(v)} for k, v in row.items() if v is not None}
        item["pending_shard"] = {"S": SHARD}
        item["pending_order"] = {"S": f"{row['created_at']}|{entry.entry_id}"}
        db = await self._db()
        try:
            await call(
                "ledger add",
                lambda: db.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(entry_id)",
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def get(self, entry_id: str) -> LedgerEntry | None:
        answer = await self._call(
            "get",
            lambda db: db.get_item(
                TableName=self._table, Key={"entry_id": {"S": entry_id}}, ConsistentRead=True
            ),
        )
        item = answer.get("Item")
        return None if item is None else _entry(item)

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        ids: list[str] = []
        start_key: dict[str, Any] | None = None
        while len(ids) < limit:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": INDEX,
                "KeyConditionExpression": "pending_shard = :p",
                "ExpressionAttributeValues": {":p": {"S": SHARD}},
                "Limit": limit - len(ids),
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            page = await self._call("pending", _query(kwargs))
            ids += [item["entry_id"]["S"] for item in page.get("Items", [])]
            start_key = page.get("LastEvaluatedKey")
            if not start_key:
                break
        entries = await self._consistent_get(ids)
        found = [e for e in entries if e.status is EntryStatus.PENDING]
        found.sort(key=lambda e: (e.created_at, e.entry_id))
        return found

    async def _consistent_get(self, ids: list[str]) -> list[LedgerEntry]:
        out: list[LedgerEntry] = []
        for start in range(0, len(ids), _BATCH_GET_MAX):
            wanted: list[dict[str, Any]] = [
                {"entry_id": {"S": i}} for i in ids[start : start + _BATCH_GET_MAX]
            ]

            async def read() -> None:
                # Each try asks only for what the one before left unprocessed.
                nonlocal wanted
                request: dict[str, Any] = {self._table: {"Keys": wanted, "ConsistentRead": True}}
                answer = await self._call("pending read", _batch_get(request))
                out.extend(
                    _entry(item) for item in answer.get("Responses", {}).get(self._table, [])
                )
                left = answer.get("UnprocessedKeys", {}).get(self._table)
                wanted = list(left["Keys"]) if left else []
                if wanted:
                    raise PartlyUnprocessed(f"ledger pending read: {len(wanted)} keys unprocessed")

            await UNPROCESSED_RETRY.call(
                read,
                retry_on=lambda error: isinstance(error, PartlyUnprocessed),
                before_sleep=logged_retries("ledger read left keys unprocessed; retrying"),
            )
        return out

    async def claim(self, entry_ids: Sequence[str], message_id: str, at: datetime) -> None:
        for entry_id in entry_ids:
            await self._conditional_update(
                "claim",
                entry_id,
                "SET message_id = :m, updated_at = :u",
                "#s = :pending AND attribute_not_exists(message_id)",
                {":m": {"S": message_id}, ":u": {"S": at.isoformat()}},
            )

    async def mark_sent(self, entry_ids: Sequence[str], at: datetime) -> None:
        for entry_id in entry_ids:
            await self._conditional_update(
                "mark_sent",
                entry_id,
                "SET #s = :to, updated_at = :u REMOVE pending_shard",
                "#s = :pending",
                {":to": {"S": EntryStatus.SENT.value}, ":u": {"S": at.isoformat()}},
            )

    async def mark_failed(self, entry_ids: Sequence[str], reason: str, at: datetime) -> None:
        for entry_id in entry_ids:
            await self._conditional_update(
                "mark_failed",
                entry_id,
                "SET #s = :to, updated_at = :u, failure_reason = :r REMOVE pending_shard",
                "#s = :pending",
                {
                    ":to": {"S": EntryStatus.FAILED.value},
                    ":u": {"S": at.isoformat()},
                    ":r": {"S": reason[:4000]},
                },
            )

    async def _conditional_update(
        self,
        what: str,
        entry_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> None:
        db = await self._db()
        try:
            await call(
                f"ledger {what}",
                lambda: db.update_item(
                    TableName=self._table,
                    Key={"entry_id": {"S": entry_id}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={
                        ":pending": {"S": EntryStatus.PENDING.value},
                        **values,
                    },
                ),
            )
        except AwsRequestRejected as exc:
            # Not pending (or already claimed): the change was made before, or never applies.
            if exc.code == "ConditionalCheckFailedException":
                return
            raise


def _entry(item: dict[str, Any]) -> LedgerEntry:
    try:
        row = {k: v["S"] for k, v in item.items() if "S" in v}
    except (TypeError, AttributeError) as exc:
        raise LedgerFailure(f"unreadable ledger item: {exc}") from exc
    return LedgerEntry.from_row(row)


def _query(kwargs: dict[str, Any]) -> Callable[[DynamoDBClient], Awaitable[Any]]:
    async def run(db: DynamoDBClient) -> Any:
        return await db.query(**kwargs)

    return run


def _batch_get(request: dict[str, Any]) -> Callable[[DynamoDBClient], Awaitable[Any]]:
    async def run(db: DynamoDBClient) -> Any:
        return await db.batch_get_item(RequestItems=request)

    return run
