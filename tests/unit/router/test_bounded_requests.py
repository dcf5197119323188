"""Bounded router requests: a body limit (413), capped texts and pairs (422 naming the
field), and texts cut before tokenizing."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from stoker.inference.router import BatchingConfig, Router
from stoker.inference.router.app import MAX_REQUEST_BYTES, create_app
from stoker.inference.router.router import CHARS_PER_TOKEN
from stoker.ports.inference import PaddedBatch, TokenizedInput
from tests.unit.router.fakes import FakeBackend, FakePreprocessor, duplicate_backend


async def test_the_router_refuses_a_body_over_its_limit() -> None:
    """The router's body limit is the same middleware: 413 before any JSON is parsed."""
    router = Router({"intent": FakeBackend(), "duplicate": duplicate_backend()}, FakePreprocessor())
    app = create_app(router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            reply = await client.post(
                "/v1/intent",
                content=b"x" * (MAX_REQUEST_BYTES + 1),
                headers={"content-type": "application/json"},
            )
    assert reply.status_code == 413
    assert reply.json()["limit_bytes"] == MAX_REQUEST_BYTES


class RecordingPreprocessor(FakePreprocessor):
    """The fake preprocessor, remembering the longest text it was asked to tokenize."""

    def __init__(self) -> None:
        self.longest = 0

    def encode(self, text: str, pair: str | None = None, *, max_len: int) -> TokenizedInput:
        self.longest = max(self.longest, len(text), len(pair or ""))
        return super().encode(text, pair, max_len=max_len)

    def pad(
        self, inputs: Sequence[TokenizedInput], *, batch_size: int, seq_len: int
    ) -> PaddedBatch:
        return super().pad(inputs, batch_size=batch_size, seq_len=seq_len)


def test_the_router_cuts_text_before_tokenizing() -> None:
    """A text far longer than the largest bucket reaches the tokenizer cut to
    CHARS_PER_TOKEN characters per token of the bucket, and is reported truncated; a
    short text is untouched."""
    preprocessor = RecordingPreprocessor()
    cfg = BatchingConfig((1, 2), (8, 16))
    router = Router(
        {"intent": FakeBackend(batch_sizes=(1, 2), seq_buckets=(8, 16))},
        preprocessor,
        configs={"intent": cfg},
    )
    window = 16 * CHARS_PER_TOKEN
    tokens = router.encode("intent", "w " * 50_000, field="query")
    assert preprocessor.longest == window
    assert tokens.truncated
    assert tokens.length <= 16
    short = router.encode("intent", "red shoes", field="query")
    assert not short.truncated
    pair = router.encode("intent", "a " * 10, "b" * 100_000, field="pairs.0")
    assert preprocessor.longest == window
    assert pair.truncated


async def test_router_requests_cap_texts_and_pairs() -> None:
    """Too many pairs, a query or a product field over its limit: 422 naming the field."""
    router = Router({"intent": FakeBackend(), "duplicate": duplicate_backend()}, FakePreprocessor())
    app = create_app(router)
    product = {"title": "hammer"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            query = await client.post("/v1/intent", json={"query": "q" * 5000})
            many = await client.post(
                "/v1/duplicates", json={"pairs": [{"a": product, "b": product}] * 257}
            )
            long = await client.post(
                "/v1/duplicates",
                json={"pairs": [{"a": product, "b": {"title": "t", "description": "d" * 6000}}]},
            )
    assert query.status_code == 422
    assert query.json()["detail"][0]["field"] == "query"
    assert many.status_code == 422
    assert many.json()["detail"][0]["field"] == "pairs"
    assert long.status_code == 422
    assert long.json()["detail"][0]["field"] == "pairs.0.b.description"
