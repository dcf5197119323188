"""The router's HTTP API (FastAPI): intent, duplicates, health, readiness, metrics.

Bad input is a 422 whose body names the field; overload is a fast 429 (queue full) or
503 (draining); a request whose deadline passed in the queue is a 504.

With an authenticator, the inference routes (`/v1/...`) need a bearer token of any role:
401 without a valid one, 429 with `Retry-After` when its credential is over its rate.
Health, readiness and metrics stay open for probes and scrapers; they reveal no request
content.

An intent reply carries a `Server-Timing` header: milliseconds per phase of the request
inside the app (`stoker.inference.router.timing.PHASES`), so a client can split its own
latency into the router's phases and the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from stoker.core.ratelimit import RateLimiter
from stoker.inference.pairs import ProductText
from stoker.inference.router.errors import InvalidInput, RouterError
from stoker.inference.router.router import Router
from stoker.inference.router.server_timing import STATE_KEY, ServerTiming
from stoker.inference.router.timing import RequestTiming
from stoker.inference.router.timing import now as stamp
from stoker.ports.auth import Authenticator
from stoker.ports.resource import Resource
from stoker.telemetry import tracing
from stoker.web.auth import BearerAuth, install_refusals
from stoker.web.body_limit import BodyLimit

MAX_PAIRS_PER_REQUEST = 256
MAX_QUERY_CHARS = 4_096
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A full duplicates request (256 pairs of long products) fits; anything larger is 413."""


class IntentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: StrictStr = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="the search query to classify"
    )


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: ProductText
    b: ProductText


class DuplicatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: Annotated[list[PairIn], Field(min_length=1, max_length=MAX_PAIRS_PER_REQUEST)]


class Problem(BaseModel):
    field: str
    message: str


class RouterErrorBody(BaseModel):
    """Every refusal: `error` is its kind; `detail` lists the bad fields (422) or says why."""

    error: str
    detail: list[Problem] | str | None = None
    limit_bytes: int | None = Field(default=None, description="with 413: the body limit")


_REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": RouterErrorBody, "description": what}
    for code, what in (
        (413, "request body over the limit"),
        (422, "invalid input, naming each field"),
        (429, "the model's queue is full"),
        (503, "draining or not started"),
        (504, "the deadline passed in the queue"),
    )
}


TraceParentHeader = Annotated[
    str | None,
    Header(description="W3C Trace Context of the caller; the request's span joins its trace"),
]


def _span(name: str, traceparent: str | None) -> AbstractContextManager[object]:
    """A server span in the caller's trace while tracing is on; nothing otherwise (the
    real-time path pays nothing for it)."""
    if not tracing.enabled():
        return nullcontext()
    return tracing.span(name, parent=traceparent, kind=SpanKind.SERVER)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _error(exc: RouterError) -> Response:
    if isinstance(exc, InvalidInput):
        problem = {"field": exc.field, "message": exc.detail}
        return _json({"error": exc.reason, "detail": [problem]}, exc.http_status)
    headers = {"Retry-After": "1"} if exc.http_status in (429, 503) else None
    return _json({"error": exc.reason, "detail": str(exc)}, exc.http_status, headers)


def create_app(
    router: Router,
    *,
    warm: bool = True,
    drain_timeout_s: float = 30.0,
    on_started: Callable[[], None] | None = None,
    authenticator: Authenticator | None = None,
    rate_limiter: RateLimiter | None = None,
    resources: Sequence[Resource] = (),
) -> FastAPI:
    """The ASGI app; its lifespan warms and starts the router, and drains it on shutdown.

    `authenticator` None serves the inference routes without authentication (tests and
    benchmarks; `stoker router serve` always passes one unless told `--no-auth` on a
    loopback address). `resources` (what the authenticator reads, such as the job store)
    are started before the router and closed after it drains."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as opened:
            for resource in resources:
                await resource.start()
                opened.push_async_callback(resource.close)
            await router.start(warm=warm)
            if on_started is not None:
                on_started()
            try:
                yield
            finally:
                await router.drain(drain_timeout_s)

    app = FastAPI(title="stoker router", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES)
    # Outermost of the two, so the `http` phase includes reading the body.
    app.add_middleware(ServerTiming)
    install_refusals(app)
    secured = [] if authenticator is None else [Depends(BearerAuth(authenticator, rate_limiter))]

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                # The location of a JSON syntax error is a character offset, not a field.
                where = err.get("loc", ("body", "?"))[-1]
                problems.append({"field": "<body>", "message": f"malformed JSON at {where}"})
                continue
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            problems.append({"field": ".".join(loc) or "<body>", "message": err.get("msg", "")})
        return _json({"error": "invalid-input", "detail": problems}, 422)

    @app.exception_handler(RouterError)
    async def refused(_: Request, exc: RouterError) -> Response:
        return _error(exc)

    @app.post("/v1/intent", dependencies=secured, responses=_REFUSALS)
    async def intent(
        body: IntentRequest, request: Request, traceparent: TraceParentHeader = None
    ) -> Response:
        timing: RequestTiming | None = getattr(request.state, STATE_KEY, None)
        if timing is not None:
            timing.handled = stamp()
        with _span("stoker.router.intent", traceparent):
            result = await router.intent(body.query, timing=timing)
        return _json(
            {"intent": result.intent, "scores": result.scores, "truncated": result.truncated}
        )

    @app.post("/v1/duplicates", dependencies=secured, responses=_REFUSALS)
    async def duplicates(
        body: DuplicatesRequest, traceparent: TraceParentHeader = None
    ) -> Response:
        with _span("stoker.router.duplicates", traceparent):
            results = await router.duplicates([(p.a.as_text(), p.b.as_text()) for p in body.pairs])
        return _json(
            {
                "scores": [r.score for r in results],
                "truncated": [r.truncated for r in results],
            }
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        if not router.alive:
            return _json({"status": "dead", "detail": "batching loop stopped"}, 503)
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        if not router.ready:
            return _json({"status": "not-ready"}, 503)
        return _json({"status": "ready", "models": list(router.models)})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(router.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
