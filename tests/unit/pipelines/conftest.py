"""The `served` fixture: stoker's API with pipelines on memory stores under uvicorn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.api.app import create_app
from stoker.app.pipelines import LifecycleStepJobs
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.clock import SystemClock
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.operations import PipelineOperations
from tests.support.waiting import wait_until
from tests.unit.pipelines.served import Served


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = SystemClock()
    bus, store, pipelines = MemoryBus(), MemoryJobStore(), MemoryPipelineStore()
    for part in (bus, store, pipelines):
        await part.start()
    jobs = JobService(Transitioner(store, bus), clock)
    engine = PipelineEngine(pipelines, LifecycleStepJobs(jobs), bus, clock)
    app = create_app(
        jobs,
        TokenAuthenticator(store, clock),
        pipelines=PipelineOperations(pipelines, engine, clock),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started)
    yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", jobs, store)
    server.should_exit = True
    await task
    sock.close()
