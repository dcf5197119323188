"""The jobs API with real stoker tokens over an in-memory store and bus, and callers of
three teams: two submitters of different teams, a viewer, an admin, and a revoked token."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.api.app import create_app
from stoker.api.events import EventFeed
from stoker.auth.tokens import TokenAuthenticator, TokenService
from stoker.core.auth import Role
from stoker.core.clock import FakeClock
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from tests.support.auth import bearer


@dataclass
class Tenants:
    """The API and a token per caller: `ana` submits for search, `bo` for ads, `vic` views
    search, `root` is an admin (team ops); `gone` was ana's, revoked."""

    app: FastAPI
    store: MemoryJobStore
    bus: MemoryBus
    feed: EventFeed
    tokens: TokenService
    clock: FakeClock
    ana: str
    bo: str
    vic: str
    root: str
    gone: str

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = bearer(token) if token is not None else {}
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers)


def spec(job_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job_id,
        "training": {
            "AlgorithmSpecification": {
                "TrainingImage": "img",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": [sys.executable, "-c", "pass"],
            },
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    }
    body.update(extra)
    return body


@pytest.fixture
async def tenants() -> AsyncIterator[Tenants]:
    clock = FakeClock()
    store = MemoryJobStore()
    # One partition: events arrive in the order they were published, so a test can tell
    # that an event before the one it waited for was left out.
    bus = MemoryBus(partitions=1)
    await store.start()
    await bus.start()
    jobs = JobService(Transitioner(store, bus), clock)
    feed = EventFeed(bus, jobs, clock=clock, heartbeat_s=0.2)
    app = create_app(jobs, TokenAuthenticator(store, clock), events=feed)
    tokens = TokenService(store, clock)

    async def mint(owner: str, team: str, role: Role) -> str:
        return (await tokens.create(owner, team, role)).token

    gone = await tokens.create("ana", "search", Role.SUBMITTER)
    await tokens.revoke(gone.record.token_id)
    try:
        yield Tenants(
            app=app,
            store=store,
            bus=bus,
            feed=feed,
            tokens=tokens,
            clock=clock,
            ana=await mint("ana", "search", Role.SUBMITTER),
            bo=await mint("bo", "ads", Role.SUBMITTER),
            vic=await mint("vic", "search", Role.VIEWER),
            root=await mint("root", "ops", Role.ADMIN),
            gone=gone.token,
        )
    finally:
        feed.closing.set()
        await bus.close()
        await store.close()
