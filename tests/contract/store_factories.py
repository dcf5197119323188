"""Every store adapter (jobs and tokens), built fresh and isolated for one test.

The DynamoDB store runs on the real DynamoDB Local with a uuid table prefix and drops its
table afterwards, so runs never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from aiobotocore.session import get_session

from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.ports.store import Store
from stoker.settings import Settings


@dataclass(frozen=True)
class StoreContext:
    tmp_path: Path
    dynamodb_endpoint: str


@asynccontextmanager
async def memory_store(_: StoreContext) -> AsyncIterator[Store]:
    store = MemoryJobStore()
    await store.start()
    yield store
    await store.close()


@asynccontextmanager
async def sqlite_store(ctx: StoreContext) -> AsyncIterator[Store]:
    store = SqliteJobStore(ctx.tmp_path / "jobs.db")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def dynamodb_settings(endpoint: str) -> Settings:
    return Settings(
        dynamodb_endpoint=endpoint,
        dynamodb_table_prefix=f"test-{uuid.uuid4().hex[:12]}",
        aws_region="us-east-1",
    )


async def drop_tables(endpoint: str, names: list[str]) -> None:
    async with get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=endpoint
    ) as client:
        for name in names:
            with suppress(client.exceptions.ResourceNotFoundException):
                await client.delete_table(TableName=name)


@asynccontextmanager
async def dynamodb_store(ctx: StoreContext) -> AsyncIterator[Store]:
    store = DynamoDbJobStore(dynamodb_settings(ctx.dynamodb_endpoint))
    await store.start()
    try:
        yield store
    finally:
        await store.close()
        await drop_tables(ctx.dynamodb_endpoint, [store.table, store.tokens.table])


STORE_FACTORIES: dict[str, Callable[[StoreContext], AbstractAsyncContextManager[Store]]] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "dynamodb": dynamodb_store,
}
