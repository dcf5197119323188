"""The ledger contract against DynamoDB Local (conditional writes, the sparse pending index)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stoker.adapters.notifier.ledger_dynamodb import DynamoDbLedger
from stoker.ports.ledger import NotificationLedger
from stoker.settings import Settings
from tests.contract.store_factories import drop_tables
from tests.unit.notifier.ledger_contract import CONTRACT, entry
from tests.unit.notifier.support import T0

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(dynamodb_endpoint: str) -> AsyncIterator[DynamoDbLedger]:
    """A ledger on a table of its own, deleted afterwards."""
    settings = Settings(dynamodb_endpoint=dynamodb_endpoint)
    adapter = DynamoDbLedger(settings, table=f"stoker-test-ledger-{uuid.uuid4().hex[:12]}")
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()
        await drop_tables(dynamodb_endpoint, [adapter.table])


@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__)
async def test_dynamodb_ledger_contract(
    ledger: NotificationLedger, check: Callable[[NotificationLedger], Awaitable[None]]
) -> None:
    """The same contract as the memory and SQLite ledgers."""
    await check(ledger)


async def test_start_is_idempotent_on_an_existing_table(
    ledger: DynamoDbLedger, dynamodb_endpoint: str
) -> None:
    """A second notifier starting on the same table finds it and keeps its entries."""
    await ledger.add(entry("a"))
    again = DynamoDbLedger(Settings(dynamodb_endpoint=dynamodb_endpoint), table=ledger.table)
    await again.start()
    try:
        assert [e.job_id for e in await again.pending()] == ["a"]
        await again.mark_sent([entry("a").entry_id], T0)
        assert await ledger.pending() == []
    finally:
        await again.close()
