"""A lifecycle wired on in-memory fakes: memory bus, memory store, scriptable backend."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.api.app import create_app
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.clock import FakeClock
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from tests.support.auth import mint
from tests.unit.lifecycle.fakes import FakeTrainingBackend


@dataclass
class World:
    clock: FakeClock
    bus: MemoryBus
    store: MemoryJobStore
    backend: FakeTrainingBackend
    transitioner: Transitioner
    jobs: JobService
    sleeps: list[float]

    async def sleep(self, seconds: float) -> None:
        """Injected sleep: records the wait and moves the fake clock instead of waiting."""
        self.sleeps.append(seconds)
        self.clock.advance(seconds)


def spec(job_id: str = "job-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job_id,
        "owner": "ana",
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
            "CheckpointConfig": {"S3Uri": "s3://bucket/ckpt/job-1"},
            "RoleArn": "arn:aws:iam::000000000000:role/x",
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    }
    body.update(extra)
    return body


@pytest.fixture
async def world() -> World:
    clock = FakeClock()
    bus = MemoryBus()
    store = MemoryJobStore()
    await bus.start()
    await store.start()
    transitioner = Transitioner(store, bus)
    return World(
        clock=clock,
        bus=bus,
        store=store,
        backend=FakeTrainingBackend(clock),
        transitioner=transitioner,
        jobs=JobService(transitioner, clock),
        sleeps=[],
    )


@dataclass(frozen=True)
class Api:
    """The jobs API over the world's service, and a submitter token of ana in `search`."""

    app: FastAPI
    token: str

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {self.token}"},
        )


@pytest.fixture
async def api(world: World) -> Api:
    token = await mint(world.store, "ana", "search", clock=world.clock)
    return Api(create_app(world.jobs, TokenAuthenticator(world.store, world.clock)), token)
