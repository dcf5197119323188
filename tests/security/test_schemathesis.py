"""Schemathesis against the served `/openapi.json` of the jobs API and of the router (over
fake models): requests generated from the schemas, valid and not, get no 5xx, and every
response matches the status codes, content types and bodies the schema documents.

One check is left out: that every schema-valid request is accepted. The schemas cannot say
all the API checks (a CreateTrainingJob request's own rules, a cursor being one the API
handed out), so such requests are refused with a 4xx naming the field, which is right.

Each app runs in a real uvicorn server on a free loopback port, in a thread with its own
event loop, as it runs in production; examples per operation are limited so the whole
module stays well under two minutes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.api.app import create_app
from stoker.core.auth import Principal, Role, Unauthenticated
from stoker.core.clock import SystemClock
from stoker.devinfra import free_ports
from stoker.inference.router import BatchingConfig, Router
from stoker.inference.router.app import create_app as create_router_app
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from tests.unit.router.fakes import FakeBackend, FakePreprocessor, duplicate_backend

EXAMPLES = 60
SERVER_START_S = 30.0


TOKEN = "schemathesis-token"


class OneToken:
    """The authentication port answering one known credential: a submitter of `search`."""

    async def authenticate(self, credential: str) -> Principal:
        if credential != TOKEN:
            raise Unauthenticated("unknown or invalid token")
        return Principal("ana", "search", Role.SUBMITTER, credential_id="schemathesis")


@pytest.fixture(scope="module")
def auth_header() -> dict[str, str]:
    """The Authorization header every generated request carries (a valid token)."""
    return {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def served(build: Callable[[], Awaitable[FastAPI]]) -> Iterator[str]:
    """Run the app `build` makes in uvicorn on a free port; yield its base URL."""
    port = free_ports(1)[0]
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        config = uvicorn.Config(
            await build(), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        box["server"] = server
        # uvicorn offers no start event: its `started` flag is polled until set.
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        ready.set()
        await serving

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(SERVER_START_S), "the server did not start"
    assert box["server"].started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        box["server"].should_exit = True
        thread.join(SERVER_START_S)


async def _jobs_app() -> FastAPI:
    store, bus = MemoryJobStore(), MemoryBus()
    await store.start()
    await bus.start()
    return create_app(JobService(Transitioner(store, bus), SystemClock()), OneToken())


async def _router_app() -> FastAPI:
    cfg = BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0)
    router = Router(
        {"intent": FakeBackend(), "duplicate": duplicate_backend()},
        FakePreprocessor(),
        configs={"intent": cfg, "duplicate": cfg},
    )
    return create_router_app(router, authenticator=OneToken())


@pytest.fixture(scope="module")
def jobs_url() -> Iterator[str]:
    with served(_jobs_app) as url:
        yield url


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    with served(_router_app) as url:
        yield url


def check_every_operation(
    url: str, headers: dict[str, str], subtests: pytest.Subtests
) -> list[str]:
    """Generate up to EXAMPLES requests per operation of the schema served at `url` and
    validate each response; one subtest per operation. The operations' labels."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    labels: list[str] = []
    for found in schema.get_all_operations():
        operation = found.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        with subtests.test(msg=operation.label):
            conforms()
    return labels


def test_jobs_api_conforms_to_its_schema(
    jobs_url: str, auth_header: dict[str, str], subtests: pytest.Subtests
) -> None:
    """Every jobs API operation: no 5xx, responses as documented."""
    labels = check_every_operation(jobs_url, auth_header, subtests)
    assert "POST /v1/jobs" in labels
    assert "GET /v1/jobs" in labels


def test_router_conforms_to_its_schema(
    router_url: str, auth_header: dict[str, str], subtests: pytest.Subtests
) -> None:
    """Every router operation over fake models: no 5xx, responses as documented."""
    labels = check_every_operation(router_url, auth_header, subtests)
    assert {"POST /v1/intent", "POST /v1/duplicates"} <= set(labels)
