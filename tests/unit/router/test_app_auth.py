"""Authentication on the router's HTTP API: the inference routes need a bearer token and
are held to a rate per credential; health, readiness and metrics stay open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from stoker.core.clock import FakeClock
from stoker.core.ratelimit import RateLimiter
from stoker.inference.router import Router
from stoker.inference.router.app import create_app
from tests.unit.auth.fakes import TableAuthenticator
from tests.unit.router.test_app import PAIR, make_router

ANA = {"Authorization": "Bearer ana-secret"}
VIEWER = {"Authorization": "Bearer vi-secret"}


async def serving(**auth: Any) -> AsyncIterator[httpx.AsyncClient]:
    router, _ = make_router()
    app = create_app(router, authenticator=TableAuthenticator(), **auth)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            yield c


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in serving():
        yield c


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/intent", {"query": "red shoes"}), ("/v1/duplicates", {"pairs": [PAIR]})],
)
async def test_inference_needs_a_valid_bearer_token(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    """No token or an unknown one: 401 with a challenge, before the body is judged. Any
    role may call the models (a viewer too): inference reads and changes no team's data."""
    for headers in ({}, {"Authorization": "Bearer guess"}):
        reply = await client.post(path, json=body, headers=headers)
        assert reply.status_code == 401
        assert reply.json()["error"] == "unauthenticated"
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post(path, json={"bad": 1})).status_code == 401
    assert (await client.post(path, json=body, headers=ANA)).status_code == 200
    assert (await client.post(path, json=body, headers=VIEWER)).status_code == 200


async def test_probes_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    """Kubernetes probes and Prometheus scrapes carry no token."""
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


async def test_a_credential_over_its_rate_gets_429_with_retry_after() -> None:
    """Burst 3 at 1/s per credential: the fourth request in the same instant is 429 with
    Retry-After 1 and is never queued; another credential is not slowed."""
    clock = FakeClock()
    async for c in serving(rate_limiter=RateLimiter(clock, rate_per_s=1, burst=3)):
        codes = [
            (await c.post("/v1/intent", json={"query": "q"}, headers=ANA)).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        over = await c.post("/v1/intent", json={"query": "q"}, headers=ANA)
        assert over.headers["Retry-After"] == "1"
        assert over.json()["error"] == "rate-limited"
        assert (await c.post("/v1/intent", json={"query": "q"}, headers=VIEWER)).status_code == 200
        clock.advance(1)
        assert (await c.post("/v1/intent", json={"query": "q"}, headers=ANA)).status_code == 200


async def test_openapi_marks_only_the_inference_routes_as_secured(
    client: httpx.AsyncClient,
) -> None:
    """/openapi.json declares the bearer scheme on /v1 routes and not on the probes."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths["/v1/intent"]["post"]["security"] == [{"HTTPBearer": []}]
    assert paths["/v1/duplicates"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]


class Recorded:
    """A resource that notes, when started and when closed, what state the router is in."""

    def __init__(self, router: Router, log: list[str]) -> None:
        self.router = router
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start, router ready: {self.router.ready}")

    async def close(self) -> None:
        self.log.append(f"close, router drained: {self.router.drained_completely}")


async def test_resources_are_open_for_as_long_as_the_router_serves() -> None:
    """What the authenticator reads (the job store) starts before the router and closes
    after it has drained."""
    log: list[str] = []
    router, _ = make_router()
    resource = Recorded(router, log)
    app = create_app(router, authenticator=TableAuthenticator(), resources=[resource])
    async with app.router.lifespan_context(app):
        assert router.ready
    assert log == ["start, router ready: False", "close, router drained: True"]
