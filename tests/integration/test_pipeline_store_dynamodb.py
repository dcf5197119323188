"""What the DynamoDB pipeline store adds to the contract: DynamoDB's item limit met with an
error naming the field, definitions kept by content for the executions that run them, and
an outbox two processes share."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import orjson
import pytest

from stoker.adapters.store.dynamodb_pipelines import DynamoDbPipelineStore
from stoker.core.errors import ItemTooLarge
from tests.contract.store_factories import drop_tables, dynamodb_settings
from tests.contract.test_pipeline_store_contract import DEFINITION, T0, new_state, started_event

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def stores(dynamodb_endpoint: str) -> AsyncIterator[tuple[DynamoDbPipelineStore, ...]]:
    """Two stores on one table, as two processes would have."""
    settings = dynamodb_settings(dynamodb_endpoint)
    first, second = DynamoDbPipelineStore(settings), DynamoDbPipelineStore(settings)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()
        await drop_tables(dynamodb_endpoint, [first.table])


def big_definition(noise_bytes: int) -> str:
    """A definition carrying `noise_bytes` of random hex (which compresses to about half)."""
    doc = dict(DEFINITION)
    doc["Metadata"] = {"noise": os.urandom(noise_bytes // 2).hex()}
    return orjson.dumps(doc).decode()


async def test_a_definition_over_the_item_limit_is_refused_naming_the_field(
    stores: tuple[DynamoDbPipelineStore, ...],
) -> None:
    store = stores[0]
    with pytest.raises(ItemTooLarge) as caught:
        await store.put_pipeline(
            "huge", team="search", definition=big_definition(1_000_000), description=None, now=T0
        )
    assert caught.value.field == "definition"
    assert "pipeline 'huge'" in str(caught.value)
    assert await store.list_pipelines() == []


async def test_a_large_definition_that_compresses_is_kept_whole(
    stores: tuple[DynamoDbPipelineStore, ...],
) -> None:
    """1 MB of JSON (SageMaker's own limit for a definition) that compresses well."""
    store = stores[0]
    doc = orjson.loads(big_definition(10))
    doc["Metadata"] = {"notes": "a repeated note about this pipeline " * 30_000}
    text = orjson.dumps(doc).decode()
    assert len(text) > 1_000_000
    await store.put_pipeline("large", team="search", definition=text, description=None, now=T0)
    assert (await store.get_pipeline("large")).definition == text
    await store.create_execution(new_state("e1"), pipeline_version=1, definition=text)
    assert (await stores[1].get_execution("e1")).definition == text


async def test_an_execution_keeps_the_definition_it_started_with(
    stores: tuple[DynamoDbPipelineStore, ...],
) -> None:
    first, second = stores
    await first.create_execution(new_state("e1"), pipeline_version=1, definition='{"v": 1}')
    await first.create_execution(new_state("e2"), pipeline_version=2, definition='{"v": 2}')
    await first.create_execution(new_state("e3"), pipeline_version=1, definition='{"v": 1}')
    listed = {e.execution_id: e.definition for e in await second.list_executions("demo")}
    assert listed == {"e1": '{"v": 1}', "e2": '{"v": 2}', "e3": '{"v": 1}'}


async def test_events_another_process_wrote_are_relayed_and_marked_once(
    stores: tuple[DynamoDbPipelineStore, ...],
) -> None:
    """The writer died before publishing: a relay in another process reads the events as
    pending, marks them, and they are gone for both; part of a save's events marked leaves
    the rest pending."""
    writer, relay = stores
    state = new_state("e1")
    await writer.create_execution(state, pipeline_version=1, definition="{}")
    await writer.save_execution(
        state, expected_version=1, outbox=[started_event("e1") for _ in range(3)]
    )
    pending = await relay.pending_outbox()
    assert len(pending) == 3
    await relay.mark_published([pending[0].entry_id])
    assert [e.entry_id for e in await writer.pending_outbox()] == [e.entry_id for e in pending[1:]]
    await relay.mark_published([e.entry_id for e in pending[1:]])
    assert await writer.pending_outbox() == []
    assert await relay.pending_outbox() == []
