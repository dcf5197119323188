"""Reading many items of a DynamoDB table: a query followed through its pages, and a batch
read that asks again for the keys DynamoDB left unprocessed."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import PartlyUnprocessed, call, logged_retries
from stoker.adapters.store.dynamodb import BATCH_GET_KEYS, UNPROCESSED_RETRY

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


async def query_all(
    client: DynamoDBClient, what: str, request: dict[str, Any], *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every item a query matches (or the first `limit`), following LastEvaluatedKey."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = dict(request)
        if limit is not None:
            page["Limit"] = limit - len(items)
        if start is not None:
            page["ExclusiveStartKey"] = start
        response = await call(what, partial(client.query, **page))
        items.extend(dict(item) for item in response.get("Items", []))
        start = response.get("LastEvaluatedKey")
        if start is None or (limit is not None and len(items) >= limit):
            return items


class BatchReader:
    """BatchGetItem over any number of keys of one table, 100 keys per request."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for first in range(0, len(keys), BATCH_GET_KEYS):
            found.extend(await self._chunk(keys[first : first + BATCH_GET_KEYS]))
        return found

    async def _chunk(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        left = keys

        async def read() -> None:
            nonlocal left
            request: Any = {self._table: {"Keys": left, "ConsistentRead": True}}
            response: Any = await call(
                "batch_get_item", partial(self._client.batch_get_item, RequestItems=request)
            )
            items.extend(dict(i) for i in response.get("Responses", {}).get(self._table, []))
            left = list(response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", []))
            if left:
                raise PartlyUnprocessed(f"batch_get_item: {len(left)} keys unprocessed")

        await UNPROCESSED_RETRY.call(
            read,
            retry_on=lambda error: isinstance(error, PartlyUnprocessed),
            before_sleep=logged_retries("batch read left keys unprocessed; retrying"),
        )
        return items
