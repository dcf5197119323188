"""The DynamoDB single-table layout shared by the job store and the DynamoDB Streams bus.

One table, `<prefix>-jobs`, stream on (NEW_IMAGE). Item kinds (see docs/store.md):

| item     | pk                    | sk                                  |
|----------|-----------------------|-------------------------------------|
| job      | JOB#<job id>          | JOB                                 |
| history  | JOB#<job id>          | H#<version, 10 digits>              |
| event    | EVT#<topic>#<key>     | <sortable unique id>                |
| counter  | TREND#<yyyy-mm>       | <yyyy-mm-dd>#S|R#<shard>#<name>     |

Sparse GSIs over the job item (an index holds only items carrying its key attributes):
by-status (s_pk, c_sk), by-owner (o_pk, c_sk), by-owner-status (os_pk, c_sk), by-due
(d_pk, d_sk; present only while RetryScheduled), and outbox-pending (p_pk, p_sk) over event
items the relay has not marked published.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import AwsRequestRejected, call
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.retry import RetryPolicy

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

JOB_SK = "JOB"
KIND_JOB = "job"
KIND_HISTORY = "history"
KIND_EVENT = "event"
KIND_COUNTER = "counter"

DUE_PARTITION = "DUE"
PENDING_PARTITION = "PENDING"
TREND_SHARDS = 4
"""Counters are split over a few items per day and status so concurrent transactions
touching "today's Completed count" rarely collide (a TransactionConflict)."""

EVENT_TTL_S = 7 * 24 * 3600
"""Event items expire a week after writing; the stream keeps them for 24 hours anyway."""

INDEX_STATUS = "by-status"
INDEX_OWNER = "by-owner"
INDEX_OWNER_STATUS = "by-owner-status"
INDEX_DUE = "by-due"
INDEX_PENDING = "outbox-pending"

TABLE_READY_TIMEOUT_S = 60.0
TABLE_READY_POLL = RetryPolicy(
    initial_delay_s=0.5,
    multiplier=1,
    max_delay_s=0.5,
    jitter=0,
    max_attempts=int(TABLE_READY_TIMEOUT_S / 0.5) + 1,
)
"""A table being created is described again every half second, for up to a minute."""


def job_table_name(prefix: str) -> str:
    return f"{prefix}-jobs"


def checkpoint_table_name(prefix: str) -> str:
    return f"{prefix}-bus-checkpoints"


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def history_sk(version: int) -> str:
    return f"H#{version:010d}"


def event_pk(topic: str, key: str) -> str:
    return f"EVT#{topic}#{key}"


def status_pk(status: str) -> str:
    return f"S#{status}"


def owner_pk(owner: str) -> str:
    return f"O#{owner}"


def owner_status_pk(owner: str, status: str) -> str:
    # The status never contains "|", so the last "|" always separates the two.
    return f"OS#{owner}|{status}"


def event_item(
    topic: str, key: str, value: bytes, sort_id: str, *, pending: bool
) -> dict[str, AttributeValueTypeDef]:
    """An event item: what the Streams bus publishes and what the outbox writes."""
    item: dict[str, AttributeValueTypeDef] = {
        "pk": {"S": event_pk(topic, key)},
        "sk": {"S": sort_id},
        "kind": {"S": KIND_EVENT},
        "topic": {"S": topic},
        "key": {"S": key},
        "value": {"B": value},
        "expires_at": {"N": str(int(time.time()) + EVENT_TTL_S)},
    }
    if pending:
        item["p_pk"] = {"S": PENDING_PARTITION}
        item["p_sk"] = {"S": sort_id}
    return item


def _gsi(name: str, pk: str, sk: str, attributes: list[str]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": pk, "KeyType": "HASH"},
            {"AttributeName": sk, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": attributes},
    }


JOB_TABLE_INDEXES = [
    _gsi(INDEX_STATUS, "s_pk", "c_sk", ["record"]),
    _gsi(INDEX_OWNER, "o_pk", "c_sk", ["record"]),
    _gsi(INDEX_OWNER_STATUS, "os_pk", "c_sk", ["record"]),
    _gsi(INDEX_DUE, "d_pk", "d_sk", ["record"]),
    _gsi(INDEX_PENDING, "p_pk", "p_sk", ["topic", "key", "value"]),
]


def _key_attributes(names: list[str]) -> list[dict[str, Any]]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


async def ensure_job_table(client: DynamoDBClient, name: str) -> str:
    """Create the job table (stream NEW_IMAGE, GSIs, TTL) if missing, wait until ACTIVE,
    and return its stream ARN."""
    attributes = ["pk", "sk", "s_pk", "o_pk", "os_pk", "c_sk", "d_pk", "d_sk", "p_pk", "p_sk"]
    await _ensure_table(
        client,
        name,
        {
            "AttributeDefinitions": _key_attributes(attributes),
            "GlobalSecondaryIndexes": JOB_TABLE_INDEXES,
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        },
    )
    description = await _wait_active(client, name)
    await _ensure_ttl(client, name, "expires_at")
    stream_arn = description.get("LatestStreamArn")
    if not stream_arn:
        raise InfrastructureUnavailable(f"table {name} has no stream; enable NEW_IMAGE streams")
    return str(stream_arn)


async def ensure_checkpoint_table(client: DynamoDBClient, name: str) -> None:
    """The bus's consumer-group checkpoints and leases; no stream, no indexes."""
    await _ensure_table(client, name, {"AttributeDefinitions": _key_attributes(["pk", "sk"])})
    await _wait_active(client, name)


async def _ensure_table(client: DynamoDBClient, name: str, extra: dict[str, Any]) -> None:
    try:
        await call(f"describe_table {name}", lambda: client.describe_table(TableName=name))
        return
    except AwsRequestRejected as exc:
        if exc.code != "ResourceNotFoundException":
            raise
    try:
        await call(
            f"create_table {name}",
            lambda: client.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
                **extra,
            ),
        )
    except AwsRequestRejected as exc:
        # Another process created it between our describe and create: fine.
        if exc.code != "ResourceInUseException":
            raise


class TableNotReady(InfrastructureUnavailable):
    """A table (or one of its indexes) is still being created."""


async def _wait_active(client: DynamoDBClient, name: str) -> dict[str, Any]:
    async def active() -> dict[str, Any]:
        response = await call(
            f"describe_table {name}", lambda: client.describe_table(TableName=name)
        )
        table: dict[str, Any] = dict(response["Table"])
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(
            index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
        ):
            return table
        raise TableNotReady(f"table {name} not ACTIVE (waited up to {TABLE_READY_TIMEOUT_S:.0f} s)")

    return await TABLE_READY_POLL.call(
        active,
        retry_on=lambda error: isinstance(error, TableNotReady),
    )


async def _ensure_ttl(client: DynamoDBClient, name: str, attribute: str) -> None:
    current = await call(
        f"describe_time_to_live {name}", lambda: client.describe_time_to_live(TableName=name)
    )
    status = current.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
    if status in {"ENABLED", "ENABLING"}:
        return
    await call(
        f"update_time_to_live {name}",
        lambda: client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        ),
    )
