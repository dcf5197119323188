"""The DynamoDB single-table layout shared by the job store and the DynamoDB Streams bus.

One table, `<prefix>-jobs`, stream on (NEW_IMAGE). Item kinds (see docs/store.md):

| item     | pk                    | sk                                  |
|----------|-----------------------|-------------------------------------|
| job      | JOB#<job id>          | JOB                                 |
| history  | JOB#<job id>          | H#<version, 10 digits>              |
| event    | EVT#<topic>#<key>     | <sortable unique id>                |
| counter  | TREND#<yyyy-mm>       | <yyyy-mm-dd>#S|R|C|B#<shard>#<name> |
| counter  | TEAMTREND#<team>#<yyyy-mm> | the same, one team's only      |
| marker   | META                  | <name of a one-time upgrade done>   |
| slot     | SLOTS                 | J#<job id>                          |
| count    | SLOTCOUNT             | <instance type>                     |
| lease    | LEASE                 | <lease name>                        |

Sparse GSIs over the job item (an index holds only items carrying its key attributes):
by-status (s_pk, c_sk), by-owner (o_pk, c_sk), by-owner-status (os_pk, c_sk), by-team
(t_pk, c_sk), by-team-status (ts_pk, c_sk), by-team-owner (to_pk, c_sk), by-due (d_pk, d_sk;
present only while RetryScheduled), and outbox-pending (p_pk, p_sk) over event items the
relay has not marked published. Slots, their counts and leases (shared capacity,
`dynamodb_slots`) carry no index key.

API tokens live in a table of their own, `<prefix>-tokens` (no stream, so token items never
travel with the events; a deployment may grant the API alone access to it): one partition
`TOKEN`, sort key the token id.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import AwsRequestRejected, call
from stoker.core.auth import DEFAULT_TEAM
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.job import JobStatus
from stoker.core.retry import RetryPolicy
from stoker.core.trends import BILLABLE, Measure

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

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
INDEX_TEAM = "by-team"
INDEX_TEAM_STATUS = "by-team-status"
INDEX_TEAM_OWNER = "by-team-owner"
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


def token_table_name(prefix: str) -> str:
    return f"{prefix}-tokens"


TOKEN_PARTITION = "TOKEN"
"""Every token item's pk: a deployment has tens or hundreds of tokens, read one at a time
by id and listed rarely, which one partition serves."""

META_PK = "META"
TEAM_KEYS_MARKER = "team-keys-v1"
"""Written once every job item written before jobs had teams carries the team index keys."""


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


def team_pk(team: str) -> str:
    return f"T#{team}"


def team_status_pk(team: str, status: str) -> str:
    # A team name never contains "|" (TEAM_PATTERN), so the first "|" separates the two.
    return f"TS#{team}|{status}"


def team_owner_pk(team: str, owner: str) -> str:
    return f"TO#{team}|{owner}"


def team_keys(team: str, owner: str, status: str) -> dict[str, AttributeValueTypeDef]:
    """The attributes that put a job item in the team indexes."""
    return {
        "team": {"S": team},
        "t_pk": {"S": team_pk(team)},
        "ts_pk": {"S": team_status_pk(team, status)},
        "to_pk": {"S": team_owner_pk(team, owner)},
    }


@dataclass(frozen=True, slots=True)
class ListPartition:
    """One index partition a listing reads, newest first by `c_sk`."""

    index: str
    key_name: str
    key_value: str
    status: str | None = None
    """Only items in this status (a filter on the projected `status`), or all."""


def list_partitions(status: str | None, owner: str | None, team: str | None) -> list[ListPartition]:
    """The index partitions whose merged pages answer a listing with these filters."""
    if team is not None and owner is not None:
        return [ListPartition(INDEX_TEAM_OWNER, "to_pk", team_owner_pk(team, owner), status)]
    if team is not None and status is not None:
        return [ListPartition(INDEX_TEAM_STATUS, "ts_pk", team_status_pk(team, status))]
    if team is not None:
        return [ListPartition(INDEX_TEAM, "t_pk", team_pk(team))]
    if owner is not None and status is not None:
        return [ListPartition(INDEX_OWNER_STATUS, "os_pk", owner_status_pk(owner, status))]
    if owner is not None:
        return [ListPartition(INDEX_OWNER, "o_pk", owner_pk(owner))]
    # Without an owner or a team, each status is its own index partition; with no status
    # filter the pages of all of them are merged newest first.
    statuses = [status] if status is not None else [s.value for s in JobStatus]
    return [ListPartition(INDEX_STATUS, "s_pk", status_pk(value)) for value in statuses]


def trend_pk(month: str, team: str | None) -> str:
    """The partition of a month's counters: every team's, or one team's (so a caller scoped
    to its team reads only its own)."""
    return f"TREND#{month}" if team is None else f"TEAMTREND#{team}#{month}"


def counter_updates(
    table: str, job_id: str, team: str, measures: Sequence[Measure]
) -> list[TransactWriteItemTypeDef]:
    """The trend counters a write adds to (ADD, inside the transaction): each measure once
    in the month's partition of every team (a billable measure's name there carries the
    team: `<instance type>|<team>`) and once in the team's own."""
    shard = zlib.crc32(job_id.encode()) % TREND_SHARDS
    updates: list[TransactWriteItemTypeDef] = []
    for measure in measures:
        day = measure.day.isoformat()
        every_team = f"{measure.name}|{team}" if measure.kind == BILLABLE else measure.name
        for scope, name in ((None, every_team), (team, measure.name)):
            sk = f"{day}#{measure.kind}#{shard}#{name}"
            updates.append(_counter_update(table, trend_pk(day[:7], scope), sk, measure, name))
    return updates


def _counter_update(
    table: str, pk: str, sk: str, measure: Measure, name: str
) -> TransactWriteItemTypeDef:
    day = measure.day.isoformat()
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "UpdateExpression": "SET #day = :day, #kind = :kind, #name = :name,"
            " #type = :counter ADD #count :amount",
            "ExpressionAttributeNames": {
                "#day": "day",
                "#kind": "counter",
                "#name": "name",
                "#type": "kind",
                "#count": "count",
            },
            "ExpressionAttributeValues": {
                ":day": {"S": day},
                ":kind": {"S": measure.kind},
                ":name": {"S": name},
                ":counter": {"S": KIND_COUNTER},
                ":amount": {"N": str(measure.amount)},
            },
        }
    }


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
    _gsi(INDEX_TEAM, "t_pk", "c_sk", ["record"]),
    _gsi(INDEX_TEAM_STATUS, "ts_pk", "c_sk", ["record"]),
    # With the status projected, team + owner + status is this index and a filter on status
    # that reads only that owner's jobs of that team.
    _gsi(INDEX_TEAM_OWNER, "to_pk", "c_sk", ["record", "status"]),
    _gsi(INDEX_DUE, "d_pk", "d_sk", ["record"]),
    _gsi(INDEX_PENDING, "p_pk", "p_sk", ["topic", "key", "value"]),
]


JOB_TABLE_KEYS = [
    "pk",
    "sk",
    "s_pk",
    "o_pk",
    "os_pk",
    "t_pk",
    "ts_pk",
    "to_pk",
    "c_sk",
    "d_pk",
    "d_sk",
    "p_pk",
    "p_sk",
]


def _key_attributes(names: list[str]) -> list[dict[str, Any]]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


async def ensure_job_table(client: DynamoDBClient, name: str) -> str:
    """Create the job table (stream NEW_IMAGE, GSIs, TTL) if missing, wait until ACTIVE,
    and return its stream ARN."""
    attributes = _key_attributes(JOB_TABLE_KEYS)
    await _ensure_table(
        client,
        name,
        {
            "AttributeDefinitions": attributes,
            "GlobalSecondaryIndexes": JOB_TABLE_INDEXES,
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        },
    )
    description = await _wait_active(client, name)
    # A table made by an older stoker lacks the indexes added since: add them (DynamoDB
    # builds one new index per UpdateTable, each filled from the items already there).
    present = {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])}
    for index in JOB_TABLE_INDEXES:
        if index["IndexName"] not in present:
            await call(
                f"update_table {name} (add {index['IndexName']})",
                partial(client.update_table, **_index_update(name, attributes, index)),
            )
            description = await _wait_active(client, name)
    await _ensure_ttl(client, name, "expires_at")
    stream_arn = description.get("LatestStreamArn")
    if not stream_arn:
        raise InfrastructureUnavailable(f"table {name} has no stream; enable NEW_IMAGE streams")
    return str(stream_arn)


def _index_update(name: str, attributes: list[Any], index: dict[str, Any]) -> dict[str, Any]:
    return {
        "TableName": name,
        "AttributeDefinitions": attributes,
        "GlobalSecondaryIndexUpdates": [{"Create": index}],
    }


async def ensure_token_table(client: DynamoDBClient, name: str) -> None:
    """The API tokens; no stream, no indexes."""
    await _ensure_table(client, name, {"AttributeDefinitions": _key_attributes(["pk", "sk"])})
    await _wait_active(client, name)


async def ensure_checkpoint_table(client: DynamoDBClient, name: str) -> None:
    """The bus's consumer-group checkpoints and leases; no stream, no indexes."""
    await _ensure_table(client, name, {"AttributeDefinitions": _key_attributes(["pk", "sk"])})
    await _wait_active(client, name)


async def ensure_indexed_table(
    client: DynamoDBClient, name: str, keys: list[str], indexes: list[dict[str, Any]]
) -> None:
    """A table of its own (pk, sk) with these GSIs, no stream, no TTL (the pipeline
    store's); waits until it and its indexes are ACTIVE."""
    await _ensure_table(
        client,
        name,
        {"AttributeDefinitions": _key_attributes(keys), "GlobalSecondaryIndexes": indexes},
    )
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


async def ensure_team_keys(client: DynamoDBClient, table: str) -> None:
    """Put job items written before jobs had teams into the team indexes (as the default
    team's, which their records already read as), once per table: a marker item remembers
    it was done. Idempotent, so processes starting together may both do it."""
    marker: dict[str, AttributeValueTypeDef] = {
        "pk": {"S": META_PK},
        "sk": {"S": TEAM_KEYS_MARKER},
    }
    found = await call(
        "get_item team-keys marker",
        partial(client.get_item, TableName=table, Key=marker, ConsistentRead=True),
    )
    if found.get("Item"):
        return
    start: Any = None
    while True:
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#kind = :job AND attribute_not_exists(t_pk)",
            "ProjectionExpression": "pk, sk, #owner, #status",
            "ExpressionAttributeNames": {"#kind": "kind", "#owner": "owner", "#status": "status"},
            "ExpressionAttributeValues": {":job": {"S": KIND_JOB}},
        }
        if start is not None:
            request["ExclusiveStartKey"] = start
        page = await call("scan for jobs without a team", partial(client.scan, **request))
        for item in page.get("Items", []):
            await _add_team_keys(client, table, item)
        start = page.get("LastEvaluatedKey")
        if start is None:
            break
    await call(
        "put_item team-keys marker",
        partial(client.put_item, TableName=table, Item={**marker, "kind": {"S": "marker"}}),
    )


async def _add_team_keys(client: DynamoDBClient, table: str, item: dict[str, Any]) -> None:
    status = item["status"]["S"]
    keys = team_keys(DEFAULT_TEAM, item["owner"]["S"], status)
    try:
        await call(
            "update_item team keys",
            partial(
                client.update_item,
                TableName=table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in keys),
                # A job moved meanwhile was rewritten whole, with its team keys.
                ConditionExpression="attribute_not_exists(t_pk) AND #status = :status",
                ExpressionAttributeNames={
                    **{f"#{name}": name for name in keys},
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    **{f":{name}": value for name, value in keys.items()},
                    ":status": {"S": status},
                },
            ),
        )
    except AwsRequestRejected as exc:
        if exc.code != "ConditionalCheckFailedException":
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
