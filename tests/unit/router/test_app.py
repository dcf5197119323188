"""The HTTP API over fake models: replies, 422 naming the field, 429/503, health, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from stoker.inference.router import BatchingConfig, Router
from stoker.inference.router.app import create_app
from stoker.inference.router.timing import PHASES, TOTAL, parse_server_timing
from tests.support.waiting import wait_until
from tests.unit.router.fakes import FakeBackend, FakePreprocessor, duplicate_backend

PAIR = {"a": {"title": "steel hammer", "product_type": "tool"}, "b": {"title": "hammer, steel"}}


def make_router(capacity: int = 64) -> tuple[Router, FakeBackend]:
    intent = FakeBackend()
    cfg = BatchingConfig((1, 2, 4, 8), (8, 16, 32), max_queue_delay_ms=0, queue_capacity=capacity)
    r = Router({"intent": intent, "duplicate": duplicate_backend()}, FakePreprocessor(),
               configs={"intent": cfg, "duplicate": cfg})  # fmt: skip
    return r, intent


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router, _ = make_router()
    app = create_app(router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            yield c


async def test_intent_returns_label_and_scores(client: httpx.AsyncClient) -> None:
    """POST /v1/intent answers the top intent, a score per label and the truncation flag."""
    reply = await client.post("/v1/intent", json={"query": "red running shoes"})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body["scores"]) == {"buy", "browse", "support"}
    assert body["intent"] == max(body["scores"], key=body["scores"].get)
    assert sum(body["scores"].values()) == pytest.approx(1.0)
    assert body["truncated"] is False


async def test_oversized_query_is_truncated_and_flagged(client: httpx.AsyncClient) -> None:
    """A query longer than the largest bucket is answered, with truncated true."""
    reply = await client.post("/v1/intent", json={"query": "word " * 500})
    assert reply.status_code == 200
    assert reply.json()["truncated"] is True


async def test_duplicates_returns_one_score_per_pair(client: httpx.AsyncClient) -> None:
    """POST /v1/duplicates answers one score in [0, 1] per pair, in order."""
    reply = await client.post("/v1/duplicates", json={"pairs": [PAIR, PAIR, PAIR]})
    assert reply.status_code == 200
    body = reply.json()
    assert len(body["scores"]) == 3
    assert body["scores"][0] == body["scores"][1] == body["scores"][2]
    assert 0.0 <= body["scores"][0] <= 1.0
    assert body["truncated"] == [False, False, False]


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("/v1/intent", b'{"query": ""}', "query"),
        ("/v1/intent", b'{"query": "   "}', "query"),
        ("/v1/intent", b'{"query": 42}', "query"),
        ("/v1/intent", b"{}", "query"),
        ("/v1/intent", b'{"query": "x", "extra": 1}', "extra"),
        ("/v1/intent", b'{"query": "unterminated', "<body>"),
        ("/v1/duplicates", b'{"pairs": []}', "pairs"),
        ("/v1/duplicates", b'{"pairs": [{"a": {"title": "x"}}]}', "pairs.0.b"),
        ("/v1/duplicates", b'{"pairs": [{"a": {"title": 3}, "b": {"title": "y"}}]}',
         "pairs.0.a.title"),
    ],
)  # fmt: skip
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, path: str, content: bytes, field: str
) -> None:
    """Empty, malformed or mistyped input is a 422 whose detail names the offending field."""
    reply = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"] == "invalid-input"
    fields = [p["field"] for p in body["detail"]]
    assert any(f == field or f.startswith(field) for f in fields), fields


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    """healthz and readyz are 200 while serving; /metrics exposes the router histograms."""
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json()["status"] == "ready"
    await client.post("/v1/intent", json={"query": "hello there"})
    text = (await client.get("/metrics")).text
    for name in (
        "stoker_router_queue_seconds_bucket",
        "stoker_router_batch_size_bucket",
        "stoker_router_request_seconds_bucket",
        "stoker_router_batch_run_seconds_bucket",
    ):
        assert name in text
    assert 'bucket="8"' in text


async def test_full_queue_is_429_and_draining_is_503() -> None:
    """Overload answers 429 with Retry-After at once; after drain begins, 503 and not ready."""
    router, intent = make_router(capacity=1)
    app = create_app(router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as c:
            intent.gate.clear()
            running = asyncio.ensure_future(c.post("/v1/intent", json={"query": "runs"}))
            await asyncio.to_thread(intent.entered.acquire, True, 5)
            queued = asyncio.ensure_future(c.post("/v1/intent", json={"query": "waits"}))
            await wait_until(lambda: router.queued() == 1)
            full = await c.post("/v1/intent", json={"query": "rejected"})
            assert full.status_code == 429
            assert full.headers["retry-after"] == "1"
            assert full.json()["error"] == "queue-full"
            router.begin_drain()
            assert (await c.get("/readyz")).status_code == 503
            late = await c.post("/v1/intent", json={"query": "too late"})
            assert late.status_code == 503
            intent.gate.set()
            assert (await running).status_code == 200
            assert (await queued).status_code == 200


async def test_intent_reply_carries_server_timing(client: httpx.AsyncClient) -> None:
    """An intent reply says in Server-Timing how long each router phase took; the phases
    add up to the total, and other routes send no such header."""
    reply = await client.post("/v1/intent", json={"query": "red running shoes"})
    assert reply.status_code == 200
    phases = parse_server_timing(reply.headers["server-timing"])
    assert set(phases) == {*PHASES, TOTAL}
    assert all(ms >= 0 for ms in phases.values())
    assert sum(phases[name] for name in PHASES) == pytest.approx(phases[TOTAL], abs=0.01)
    assert "server-timing" not in (await client.get("/healthz")).headers
