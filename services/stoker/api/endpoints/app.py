"""The multi-model endpoint's HTTP API (FastAPI): SageMaker's multi-model container API and
the runtime InvokeEndpoint route, over one `ModelFleet`.

Container API (https://docs.aws.amazon.com/sagemaker/latest/dg/mms-container-apis.html):
`POST /models` `{"model_name", "url"}` loads (409 already loaded, 507 cannot fit),
`GET /models` lists with `next_page_token` paging, `GET /models/{name}`,
`DELETE /models/{name}` (404 not loaded), `POST /models/{name}/invoke` (404 not loaded).

Runtime: `POST /endpoints/{endpoint}/invocations` with the `X-Amzn-SageMaker-Target-Model`
header is what boto3's `sagemaker-runtime` `invoke_endpoint(TargetModel=...)` sends; the
model is loaded from the store on its first call.

Every route but `GET /ping` and `GET /metrics` needs a bearer token (docs/fleet.md says how
a boto3 client sends one). Errors are JSON `{"error", "message", "model"[, "field"]}` with
the SageMaker error code in `x-amzn-ErrorType`, which botocore reads as the error's code.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from stoker.core.ratelimit import RateLimiter
from stoker.inference.fleet import FleetError, LoadedModel, ModelFleet, Prediction
from stoker.inference.fleet.timing import phases_ms, server_timing
from stoker.inference.router.server_timing import STATE_KEY, ServerTiming
from stoker.inference.router.timing import now
from stoker.ports.auth import Authenticator
from stoker.ports.resource import Resource
from stoker.web.auth import BearerAuth, install_refusals
from stoker.web.body_limit import BodyLimit

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
"""SageMaker's limit on a real-time invocation's payload."""
MAX_PAGE = 1000
TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _refusal(error: str, message: str, status: int, code: str, **extra: Any) -> Response:
    body = {"error": error, "message": message, **extra}
    return _json(body, status, {"x-amzn-ErrorType": code})


def _described(model: LoadedModel) -> dict[str, str]:
    return {"modelName": model.name, "modelUrl": model.url}


def _page_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _after(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _BadInput("next_page_token", "not a token this endpoint gave out") from None


class _BadInput(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def create_app(
    fleet: ModelFleet,
    *,
    endpoint_name: str,
    authenticator: Authenticator | None,
    rate_limiter: RateLimiter | None = None,
    resources: Sequence[Resource] = (),
) -> FastAPI:
    """The ASGI app; its lifespan starts the fleet (workers, preloads) and closes it.

    `authenticator` None serves without tokens: tests and benchmarks only (`stoker
    endpoints serve` refuses it off loopback)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as opened:
            for resource in resources:
                await resource.start()
                opened.push_async_callback(resource.close)
            await fleet.start()
            opened.push_async_callback(fleet.close)
            yield

    app = FastAPI(title="stoker multi-model endpoint", lifespan=lifespan, docs_url=None)
    app.add_middleware(BodyLimit, max_bytes=MAX_PAYLOAD_BYTES)
    # Stamps each request's arrival; the invoke routes send the phases after it.
    app.add_middleware(ServerTiming)
    install_refusals(app, lambda reason, detail: {"error": reason, "message": detail})
    secured = [] if authenticator is None else [Depends(BearerAuth(authenticator, rate_limiter))]
    _install_errors(app)
    _open_routes(app, fleet)
    _runtime_route(app, fleet, secured, endpoint_name)
    _container_routes(app, fleet, secured)
    return app


def _answer(request: Request, prediction: Prediction, headers: dict[str, str]) -> Response:
    """The prediction's body, with where its time went as a `Server-Timing` header."""
    timing = getattr(request.state, STATE_KEY, None)
    if timing is not None:
        phases = phases_ms(timing.received, prediction.stamps, now())
        headers = {**headers, "Server-Timing": server_timing(phases)}
    return Response(prediction.body, media_type="application/json", headers=headers)


def _install_errors(app: FastAPI) -> None:

    @app.exception_handler(FleetError)
    async def refused(_: Request, exc: FleetError) -> Response:
        extra: dict[str, Any] = {"model": exc.model}
        field = getattr(exc, "field", None)
        if field is not None:
            extra["field"] = field
        return _refusal(type(exc).__name__, str(exc), exc.http_status, exc.code, **extra)

    @app.exception_handler(_BadInput)
    async def bad_input(_: Request, exc: _BadInput) -> Response:
        return _refusal("InvalidInput", str(exc), 400, "ValidationError", field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        message = f"{field}: {first.get('msg', 'invalid')}"
        return _refusal("InvalidInput", message, 400, "ValidationError", field=field)


def _open_routes(app: FastAPI, fleet: ModelFleet) -> None:
    """The probe and the scrape: no token, no request content."""

    @app.get("/ping")
    async def ping() -> Response:
        if not fleet.ready:
            return _json({"status": "starting"}, 503)
        return _json({"status": "healthy"})

    @app.get("/metrics")
    async def scrape() -> Response:
        return Response(fleet.metrics.render(), media_type="text/plain; version=0.0.4")


def _runtime_route(app: FastAPI, fleet: ModelFleet, secured: list[Any], endpoint_name: str) -> None:
    """What boto3's `sagemaker-runtime` `invoke_endpoint(TargetModel=...)` sends."""
    metrics = fleet.metrics

    @app.post("/endpoints/{endpoint}/invocations", dependencies=secured)
    async def invocations(
        endpoint: str,
        request: Request,
        target: Annotated[str | None, Header(alias=TARGET_HEADER)] = None,
    ) -> Response:
        if endpoint != endpoint_name:
            return _refusal(
                "EndpointNotFound",
                f"endpoint {endpoint!r} not found (this is {endpoint_name!r})",
                404,
                "ValidationError",
            )
        if target is None:
            raise _BadInput("TargetModel", "required on a multi-model endpoint")
        status = 200
        try:
            prediction = await fleet.invoke(target, await request.body())
        except FleetError as exc:
            status = exc.http_status
            raise
        finally:
            metrics.requests.labels("runtime", str(status)).inc()
        return _answer(request, prediction, {"x-Amzn-Invoked-Production-Variant": "AllTraffic"})


def _container_routes(app: FastAPI, fleet: ModelFleet, secured: list[Any]) -> None:
    """SageMaker's multi-model container API: explicit loads, listing, unloads, invoke."""
    metrics = fleet.metrics

    @app.post("/models", dependencies=secured)
    async def load(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise _BadInput("<body>", f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadInput("<body>", "expected a JSON object with model_name and url")
        for field in ("model_name", "url"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise _BadInput(field, "required, a non-empty string")
        model = await fleet.load(body["model_name"], Path(body["url"]))
        return _json(_described(model))

    @app.get("/models", dependencies=secured)
    async def listing(
        next_page_token: str | None = None,
        max_results: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response:
        after = _after(next_page_token)
        models = [m for m in fleet.loaded() if after is None or m.name > after]
        page = models[:max_results]
        body: dict[str, Any] = {"models": [_described(m) for m in page]}
        if len(models) > max_results:
            body["nextPageToken"] = _page_token(page[-1].name)
        return _json(body)

    @app.post("/models/{model_name:path}/invoke", dependencies=secured)
    async def invoke(model_name: str, request: Request) -> Response:
        status = 200
        try:
            prediction = await fleet.invoke_loaded(model_name, await request.body())
        except FleetError as exc:
            status = exc.http_status
            raise
        finally:
            metrics.requests.labels("container", str(status)).inc()
        return _answer(request, prediction, {})

    @app.get("/models/{model_name:path}", dependencies=secured)
    async def describe(model_name: str) -> Response:
        return _json(_described(fleet.get(model_name)))

    @app.delete("/models/{model_name:path}", dependencies=secured)
    async def unload(model_name: str) -> Response:
        await fleet.unload(model_name)
        return _json({"modelName": model_name, "status": "unloaded"})
