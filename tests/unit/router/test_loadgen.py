"""The open-loop load generator against the real HTTP app served on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stoker.cli.router import intent_body
from stoker.inference.router import BatchingConfig, Router
from stoker.inference.router.app import create_app
from stoker.inference.router.loadgen import HttpPool, LoadResult, run_load
from stoker.ports.auth import Authenticator
from tests.support.waiting import wait_until
from tests.unit.auth.fakes import TableAuthenticator
from tests.unit.router.fakes import FakeBackend, FakePreprocessor

BEARER = {"Authorization": "Bearer ana-secret"}


@asynccontextmanager
async def serving(authenticator: Authenticator | None) -> AsyncIterator[str]:
    """The router's HTTP app under uvicorn on a loopback port; yields its URL."""
    cfg = BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=1)
    router = Router({"intent": FakeBackend()}, FakePreprocessor(), configs={"intent": cfg})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(router, authenticator=authenticator)
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture(params=[False, True], ids=["open", "authenticated"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The router without authentication, and with it (the tests send `ana-secret`)."""
    async with serving(TableAuthenticator() if request.param else None) as url:
        yield url


async def test_poisson_load_gets_every_reply_and_reports_percentiles(url: str) -> None:
    """At a modest rate every request succeeds and the percentiles are ordered."""
    result = await run_load(
        url, "/v1/intent", intent_body, rate=400, duration_s=0.5, seed=1, headers=BEARER
    )
    assert result.sent > 100
    assert result.ok == result.sent
    assert result.statuses == {"200": result.sent}
    ms = result.summary_ms()
    assert 0 < ms["p50"] <= ms["p95"] <= ms["p99"] <= ms["max"]
    assert result.throughput > 0


async def test_arrivals_are_poisson_at_the_asked_rate(url: str) -> None:
    """The number of arrivals over a window is close to rate x duration (open loop)."""
    result = await run_load(
        url, "/v1/intent", intent_body, rate=1000, duration_s=0.5, seed=7, headers=BEARER
    )
    # Poisson(500): the standard deviation is about 22; five of them is a safe band.
    assert 390 <= result.sent <= 610


async def test_request_cap_and_error_statuses_are_counted(url: str) -> None:
    """max_requests bounds the run; non-200 replies are counted by status, not timed."""
    result = await run_load(
        url,
        "/v1/intent",
        lambda _: b'{"query": ""}',
        rate=500,
        duration_s=5,
        max_requests=20,
        headers=BEARER,
    )
    assert result.sent == 20
    assert result.ok == 0
    assert result.statuses == {"422": 20}


async def test_requests_without_the_token_are_counted_as_refused() -> None:
    """Against an authenticating router, a run without a token gets 401s, not timings."""
    async with serving(TableAuthenticator()) as url:
        result = await run_load(
            url, "/v1/intent", intent_body, rate=500, duration_s=5, max_requests=10
        )
    assert (result.ok, result.statuses) == (0, {"401": 10})


def test_a_token_that_would_break_the_header_is_refused() -> None:
    """A line break in the token would end the header and forge the next ones."""
    with pytest.raises(ValueError, match="line break"):
        HttpPool("http://127.0.0.1:1", headers={"Authorization": "Bearer abc\r\nX-Admin: 1"})


def test_nearest_rank_percentiles() -> None:
    """Percentiles use the nearest-rank definition over the sorted latencies."""
    r = LoadResult(1.0, 100, 100, {"200": 100}, 1.0, [i / 1000 for i in range(1, 101)])
    assert r.percentile(50) == 0.050
    assert r.percentile(99) == 0.099
    assert r.max == 0.100


async def test_headers_go_with_every_request() -> None:
    """The bearer token given to run_load reaches the server on every request; a header
    with a line break is refused before anything is sent."""
    app = FastAPI()

    @app.post("/v1/intent")
    async def intent(request: Request) -> JSONResponse:
        ok = request.headers.get("authorization") == "Bearer stk_test"
        return JSONResponse({}, status_code=200 if ok else 401)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await wait_until(lambda: server.started)
    url = f"http://127.0.0.1:{port}"
    try:
        bearer = {"Authorization": "Bearer stk_test"}
        result = await run_load(
            url, "/v1/intent", intent_body, rate=500, duration_s=5, max_requests=20, headers=bearer
        )
        assert result.statuses == {"200": 20}
        without = await run_load(
            url, "/v1/intent", intent_body, rate=500, duration_s=5, max_requests=5
        )
        assert without.statuses == {"401": 5}
        with pytest.raises(ValueError, match="line break"):
            await run_load(
                url, "/v1/intent", intent_body, rate=1, duration_s=1, headers={"X": "a\r\nb"}
            )
    finally:
        server.should_exit = True
        await task
        sock.close()
