"""A pipeline the store cannot hold (DynamoDB's item limit, ItemTooLarge) is refused by the
plain route with 413 and by the SageMaker API with a ValidationException, both naming the
field; nothing is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import httpx
import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.api.app import create_app
from stoker.app.pipelines import LifecycleStepJobs
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.clock import SystemClock
from stoker.core.errors import ItemTooLarge
from stoker.core.pipelines.records import StoredPipeline, Tag
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.operations import PipelineOperations
from tests.support.auth import mint
from tests.unit.pipelines.definitions import pipeline, training

LIMIT = 2000


class TooSmallPipelineStore(MemoryPipelineStore):
    """A memory store with a small item limit, standing in for DynamoDB's (a body within
    the API's limit cannot reach DynamoDB's own once compressed)."""

    async def put_pipeline(
        self,
        name: str,
        *,
        team: str,
        definition: str,
        description: str | None,
        now: datetime,
        create_only: bool = False,
        tags: Sequence[Tag] | None = None,
    ) -> StoredPipeline:
        if len(definition) > LIMIT:
            raise ItemTooLarge("definition", len(definition), LIMIT, what=f"pipeline {name!r}")
        return await super().put_pipeline(
            name,
            team=team,
            definition=definition,
            description=description,
            now=now,
            create_only=create_only,
            tags=tags,
        )


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryPipelineStore]]:
    clock = SystemClock()
    bus, store, pipelines = MemoryBus(), MemoryJobStore(), TooSmallPipelineStore()
    jobs = JobService(Transitioner(store, bus), clock)
    engine = PipelineEngine(pipelines, LifecycleStepJobs(jobs), bus, clock)
    app = create_app(
        jobs,
        TokenAuthenticator(store, clock),
        pipelines=PipelineOperations(pipelines, engine, clock),
    )
    token = await mint(store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://stoker",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client, pipelines


def large_definition() -> str:
    doc = pipeline(training("A"))
    doc["Metadata"] = {"notes": "x" * (2 * LIMIT)}
    return json.dumps(doc)


async def test_the_route_answers_413_naming_the_definition(
    api: tuple[httpx.AsyncClient, MemoryPipelineStore],
) -> None:
    client, store = api
    response = await client.put("/v1/pipelines/big", json={"definition": large_definition()})
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "too large for the store"
    assert [p["field"] for p in body["problems"]] == ["definition"]
    assert "pipeline 'big'" in body["problems"][0]["problem"]
    assert await store.list_pipelines() == []


async def test_the_sagemaker_api_answers_a_validation_exception_naming_the_definition(
    api: tuple[httpx.AsyncClient, MemoryPipelineStore],
) -> None:
    client, store = api
    response = await client.post(
        "/",
        content=json.dumps(
            {
                "PipelineName": "big",
                "PipelineDefinition": large_definition(),
                "RoleArn": "arn:aws:iam::000000000000:role/x",
                "ClientRequestToken": "a-token-of-at-least-32-characters-long",
            }
        ),
        headers={
            "X-Amz-Target": "SageMaker.CreatePipeline",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["__type"] == "ValidationException"
    assert body["message"].startswith("definition: ")
    assert await store.list_pipelines() == []
