"""The DynamoDB pipeline table `<prefix>-pipelines`: its items, keys and indexes.

| item        | pk                 | sk               | holds                                 |
|-------------|--------------------|------------------|---------------------------------------|
| pipeline    | PIPELINE         | <name>        | team, version, record, definition (z)     |
| definition  | DEF#<sha256>     | DEF           | a definition executions run (z)           |
| execution   | X#<execution id> | X             | version, pipeline version, def hash, state (z) |
| cached run  | CACHE#<pipeline> | <cache key>   | ended, run                                |
| schedule    | SCHEDULE         | <name>        | team, version, record                     |
| outbox      | OUTBOX           | <sortable id> | the events of one save (z), ids published |

(z): zlib-compressed JSON, binary: definitions and states are JSON that compresses several
times over, and DynamoDB counts an item's stored bytes against its 400 KB limit.

An execution keeps its definition by content hash, not inline: many executions of one
version share one item, a save rewrites only the state, and a definition cannot grow an
execution item past the limit.

Sparse GSIs over the execution item: by-pipeline (x_pk = PX#<pipeline>, x_sk = <start
time>#<execution id>, the position every store pages by; all attributes) for listing newest
first; running (r_pk, r_sk =
x_sk; present until the execution ends) and due (d_pk, d_sk = <retry time>#<id>; present
while a retry waits), keys only. No stream: the pipeline service's relay publishes the
outbox to whichever bus runs.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from stoker.adapters.store.item_size import MAX_ITEM_BYTES, item_bytes
from stoker.adapters.store.layout import ensure_indexed_table
from stoker.core.cursors import time_key
from stoker.core.errors import ItemTooLarge
from stoker.core.pipelines.records import (
    StoredExecution,
    StoredPipeline,
    state_to_json,
    tags_and_versions_doc,
    tags_and_versions_of,
)
from stoker.core.pipelines.store_rules import execution_position

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

PIPELINE_PK = "PIPELINE"
SCHEDULE_PK = "SCHEDULE"
OUTBOX_PK = "OUTBOX"
DEF_SK = "DEF"
EXECUTION_SK = "X"
RUNNING_PARTITION = "RUNNING"
DUE_PARTITION = "DUE"

INDEX_BY_PIPELINE = "by-pipeline"
INDEX_RUNNING = "running"
INDEX_DUE = "due"

OUTBOX_CHUNK_BYTES = 256 * 1024
"""Events per outbox item, by their JSON size before compression: one item stays far under
the limit, and a save of a wide fan-out's 2008 events takes a few items of one
transaction (at most 100 items, 4 MB)."""

ITEM_MARGIN_BYTES = 2048
"""Room kept for an item's other attributes when one value is measured alone."""


def pipeline_table_name(prefix: str) -> str:
    return f"{prefix}-pipelines"


def definition_pk(digest: str) -> str:
    return f"DEF#{digest}"


def execution_pk(execution_id: str) -> str:
    return f"X#{execution_id}"


def by_pipeline_pk(pipeline_name: str) -> str:
    return f"PX#{pipeline_name}"


def position_key(started_key: str, execution_id: str) -> str:
    """x_sk: start times are fixed width and "#" sorts below every id character, so the
    text order is (start time, execution id) order."""
    return f"{started_key}#{execution_id}"


def cache_pk(pipeline_name: str) -> str:
    return f"CACHE#{pipeline_name}"


def digest(definition: str) -> str:
    return hashlib.sha256(definition.encode()).hexdigest()


def pack(raw: bytes) -> bytes:
    return zlib.compress(raw, 6)


def unpack(value: Any) -> bytes:
    return zlib.decompress(bytes(value))


def check_size(item: Item, *, field: str, what: str) -> None:
    """ItemTooLarge naming `field` when the item is over DynamoDB's limit."""
    size = item_bytes(item)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLarge(field, size, MAX_ITEM_BYTES, what=what)


def check_value_size(value: bytes, *, field: str, what: str) -> None:
    """ItemTooLarge naming `field` when a value alone leaves no room in an item."""
    size = len(value) + ITEM_MARGIN_BYTES
    if size > MAX_ITEM_BYTES:
        raise ItemTooLarge(field, size, MAX_ITEM_BYTES, what=what)


def outbox_chunks(events: Sequence[tuple[str, str, bytes]]) -> list[list[tuple[str, str, bytes]]]:
    """(topic, event id, event JSON) in order, split into runs of at most
    OUTBOX_CHUNK_BYTES of JSON each; an event larger than that alone is refused."""
    chunks: list[list[tuple[str, str, bytes]]] = []
    size = OUTBOX_CHUNK_BYTES + 1
    for entry in events:
        length = len(entry[2]) + len(entry[0])
        if length > OUTBOX_CHUNK_BYTES:
            raise ItemTooLarge(
                f"event {entry[1]}", length, OUTBOX_CHUNK_BYTES, what="a pipeline event"
            )
        if size + length > OUTBOX_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += length
    return chunks


def outbox_item(sort_id: str, chunk: Sequence[tuple[str, str, bytes]]) -> Item:
    body = orjson.dumps([[topic, raw.decode()] for topic, _, raw in chunk])
    return {
        "pk": {"S": OUTBOX_PK},
        "sk": {"S": sort_id},
        "events": {"B": pack(body)},
        "count": {"N": str(len(chunk))},
    }


def outbox_events(item: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(topic, event JSON) of an outbox item, in the order written."""
    return [(topic, raw.encode()) for topic, raw in orjson.loads(unpack(item["events"]["B"]))]


def _gsi(name: str, pk: str, sk: str, projection: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": pk, "KeyType": "HASH"},
            {"AttributeName": sk, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }


PIPELINE_TABLE_INDEXES = [
    _gsi(INDEX_BY_PIPELINE, "x_pk", "x_sk", "ALL"),
    _gsi(INDEX_RUNNING, "r_pk", "r_sk", "KEYS_ONLY"),
    _gsi(INDEX_DUE, "d_pk", "d_sk", "KEYS_ONLY"),
]

PIPELINE_TABLE_KEYS = ["pk", "sk", "x_pk", "x_sk", "r_pk", "r_sk", "d_pk", "d_sk"]


async def ensure_pipeline_table(client: DynamoDBClient, name: str) -> None:
    """Create the pipeline table with its indexes if missing and wait until ACTIVE."""
    await ensure_indexed_table(client, name, PIPELINE_TABLE_KEYS, PIPELINE_TABLE_INDEXES)


def pipeline_item(record: StoredPipeline) -> Item:
    meta = {
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "description": record.description,
        **tags_and_versions_doc(record),
    }
    return {
        "pk": {"S": PIPELINE_PK},
        "sk": {"S": record.name},
        "team": {"S": record.team},
        "version": {"N": str(record.version)},
        "record": {"S": orjson.dumps(meta).decode()},
        "definition": {"B": pack(record.definition.encode())},
    }


def pipeline_record(item: dict[str, Any]) -> StoredPipeline:
    meta = orjson.loads(item["record"]["S"])
    tags, versions = tags_and_versions_of(meta)
    return StoredPipeline(
        name=item["sk"]["S"],
        team=item["team"]["S"],
        definition=unpack(item["definition"]["B"]).decode(),
        version=int(item["version"]["N"]),
        created_at=datetime.fromisoformat(meta["created_at"]),
        updated_at=datetime.fromisoformat(meta["updated_at"]),
        description=meta["description"],
        tags=tags,
        versions=versions,
    )


def execution_item(stored: StoredExecution, definition_hash: str) -> Item:
    execution_id = stored.execution_id
    raw = pack(state_to_json(stored.state))
    check_value_size(raw, field="state", what=f"pipeline execution {execution_id!r}")
    position = position_key(*execution_position(stored))
    item: Item = {
        "pk": {"S": execution_pk(execution_id)},
        "sk": {"S": EXECUTION_SK},
        "version": {"N": str(stored.version)},
        "pipeline_version": {"N": str(stored.pipeline_version)},
        "definition": {"S": definition_hash},
        "state": {"B": raw},
        "x_pk": {"S": by_pipeline_pk(stored.pipeline_name)},
        "x_sk": {"S": position},
    }
    if not stored.status.terminal:
        item["r_pk"] = {"S": RUNNING_PARTITION}
        item["r_sk"] = {"S": position}
    due = stored.next_timer
    if due is not None:
        item["d_pk"] = {"S": DUE_PARTITION}
        item["d_sk"] = {"S": f"{time_key(due)}#{execution_id}"}
    return item


def execution_id_of(item: dict[str, Any]) -> str:
    return str(item["pk"]["S"]).removeprefix("X#")


def pipeline_unchanged(old_item: Item | None) -> dict[str, Any]:
    """The condition of a pipeline's rewrite: no item yet, or the item as read (its version
    and record: tags change without a new version)."""
    if old_item is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "#v = :v AND #r = :r",
        "ExpressionAttributeNames": {"#v": "version", "#r": "record"},
        "ExpressionAttributeValues": {":v": old_item["version"], ":r": old_item["record"]},
    }


def executions_query(
    table: str, pipeline_name: str, after: tuple[str, str] | None, *, oldest_first: bool
) -> dict[str, Any]:
    """The Query of a pipeline's executions newest first (or oldest first), after the
    position `after` if given."""
    condition = "x_pk = :p"
    values: Item = {":p": {"S": by_pipeline_pk(pipeline_name)}}
    if after is not None:
        condition += " AND x_sk > :after" if oldest_first else " AND x_sk < :after"
        values[":after"] = {"S": position_key(*after)}
    return {
        "TableName": table,
        "IndexName": INDEX_BY_PIPELINE,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": oldest_first,
    }
