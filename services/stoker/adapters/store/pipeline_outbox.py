"""The pipeline store's outbox on DynamoDB: the events of one execution save in one item or
a few (`outbox_item`), written in the save's transaction; read back as pending by any
process, and marked published event by event (an item goes once all of its events are)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import AwsRequestRejected, call
from stoker.adapters.store.dynamodb import MARK_CONCURRENCY
from stoker.adapters.store.pipeline_layout import (
    OUTBOX_PK,
    outbox_chunks,
    outbox_events,
    outbox_item,
)
from stoker.core.events import CloudEvent, decode_event
from stoker.core.store_rules import SortableIds, check_limit, event_bytes
from stoker.ports.store import OutboxEntry

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

    from stoker.adapters.store.pipeline_layout import Item

PENDING_PAGE_ITEMS = 25
"""Outbox items per query page; each holds the events of one save."""


class PipelineOutbox:
    def __init__(self, client: Callable[[], DynamoDBClient], table: str) -> None:
        self._client = client
        self._table = table
        self._ids = SortableIds()
        # Event id -> sort key of its outbox item, for the events this process wrote or
        # read as pending (see DynamoDbJobStore._outbox_keys).
        self._keys: dict[str, str] = {}

    def puts(
        self, outbox: Sequence[tuple[str, CloudEvent]]
    ) -> tuple[list[TransactWriteItemTypeDef], dict[str, str]]:
        """The Put items of a transaction that writes `outbox`, and the keys to `remember`
        once it landed."""
        entries = [(topic, event.id, event_bytes(event)) for topic, event in outbox]
        puts: list[TransactWriteItemTypeDef] = []
        keys: dict[str, str] = {}
        for chunk in outbox_chunks(entries):
            sort_id = self._ids.next()
            puts.append({"Put": {"TableName": self._table, "Item": outbox_item(sort_id, chunk)}})
            keys.update((event_id, sort_id) for _, event_id, _ in chunk)
        return puts, keys

    def remember(self, keys: dict[str, str]) -> None:
        self._keys.update(keys)

    async def pending(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)
        entries: list[OutboxEntry] = []
        start: dict[str, Any] | None = None
        while len(entries) < limit:
            request: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :o",
                "ExpressionAttributeValues": {":o": {"S": OUTBOX_PK}},
                "ConsistentRead": True,
                "Limit": PENDING_PAGE_ITEMS,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            page = await call("pending_outbox", partial(self._client().query, **request))
            for item in page.get("Items", []):
                done = set(item.get("done", {}).get("SS", []))
                for topic, raw in outbox_events(item):
                    event = decode_event(raw)
                    if event.id in done or len(entries) >= limit:
                        continue
                    self._keys[event.id] = item["sk"]["S"]
                    entries.append(OutboxEntry(entry_id=event.id, topic=topic, event=event))
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        return entries

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        by_item: dict[str, list[str]] = {}
        for entry_id in dict.fromkeys(entry_ids):
            sort_id = self._keys.get(entry_id)
            # Written by another process and not read here: its writer or a relay pass
            # (which reads it as pending first) marks it.
            if sort_id is not None:
                by_item.setdefault(sort_id, []).append(entry_id)
        gate = asyncio.Semaphore(MARK_CONCURRENCY)

        async def mark(sort_id: str, ids: list[str]) -> None:
            async with gate:
                await self._mark_item(sort_id, ids)
            for entry_id in ids:
                self._keys.pop(entry_id, None)

        await asyncio.gather(*(mark(sort_id, ids) for sort_id, ids in by_item.items()))

    async def _mark_item(self, sort_id: str, ids: list[str]) -> None:
        """Add `ids` to the item's published ones; the item goes once all of its are."""
        key: Item = {"pk": {"S": OUTBOX_PK}, "sk": {"S": sort_id}}
        try:
            response = await call(
                "mark_published",
                lambda: self._client().update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="ADD done :ids",
                    # Without it, an item already removed would come back as a stray one.
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":ids": {"SS": ids}},
                    ReturnValues="ALL_NEW",
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code == "ConditionalCheckFailedException":
                return
            raise
        after = response.get("Attributes", {})
        if len(after.get("done", {}).get("SS", [])) >= int(after.get("count", {}).get("N", 0)):
            await call(
                "mark_published delete",
                lambda: self._client().delete_item(TableName=self._table, Key=key),
            )
