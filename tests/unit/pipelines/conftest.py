"""The `served` and `served_on` fixtures: stoker's API with pipelines under uvicorn (memory
stores; `served_on` also with the SQLite and DynamoDB Local pipeline stores)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from moto.server import ThreadedMotoServer

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.objects.s3 import S3ObjectReader
from stoker.adapters.store.dynamodb_pipelines import DynamoDbPipelineStore
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.api.app import create_app
from stoker.app.pipelines import LifecycleStepJobs
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.clock import SystemClock
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.operations import PipelineOperations
from stoker.ports.pipelines import PipelineStore
from tests.contract.store_factories import drop_tables, dynamodb_settings
from tests.support.waiting import wait_until
from tests.unit.pipelines.served import Served


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 server on a loopback port: the object store the SDK uploads to."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def served(s3_url: str) -> AsyncIterator[Served]:
    async with serving(MemoryPipelineStore(), s3_url) as ready:
        yield ready


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)]
)
async def served_on(
    request: pytest.FixtureRequest, s3_url: str, tmp_path: Path
) -> AsyncIterator[Served]:
    """`served` with the pipeline store of each kind (DynamoDB Local for "dynamodb")."""
    if request.param == "memory":
        pipelines: PipelineStore = MemoryPipelineStore()
    elif request.param == "sqlite":
        pipelines = SqlitePipelineStore(tmp_path / "pipelines.db")
    else:
        endpoint: str = request.getfixturevalue("dynamodb_endpoint")
        pipelines = DynamoDbPipelineStore(dynamodb_settings(endpoint))
    try:
        async with serving(pipelines, s3_url) as ready:
            yield ready
    finally:
        if isinstance(pipelines, DynamoDbPipelineStore):
            await drop_tables(endpoint, [pipelines.table])


@asynccontextmanager
async def serving(pipelines: PipelineStore, s3_url: str) -> AsyncIterator[Served]:
    clock = SystemClock()
    bus, store = MemoryBus(), MemoryJobStore()
    for part in (bus, store, pipelines):
        await part.start()
    jobs = JobService(Transitioner(store, bus), clock)
    engine = PipelineEngine(pipelines, LifecycleStepJobs(jobs), bus, clock)
    objects = S3ObjectReader(endpoint_url=s3_url)
    app = create_app(
        jobs,
        TokenAuthenticator(store, clock),
        pipelines=PipelineOperations(pipelines, engine, clock, objects=objects),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started)
    yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", jobs, store, s3_url)
    server.should_exit = True
    await task
    sock.close()
    await objects.close()
    await pipelines.close()
