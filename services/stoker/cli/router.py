"""`stoker router`: serve the inference router, load-test it, run the duplicate stream."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from stoker.app.auth import Authentication, router_authentication, router_rate_limiter
from stoker.client import find_token
from stoker.core.errors import ConfigurationError
from stoker.inference.router.loadgen import LoadResult, run_load
from stoker.inference.router.models import ModelSet
from stoker.inference.router.router import Router, config_for
from stoker.logs import configure_logging
from stoker.settings import Settings, load_settings

app = typer.Typer(
    help="Inference router: HTTP API, open-loop load generator, streaming duplicates.",
    no_args_is_help=True,
)

BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="compile target of the model registry (cpu, cuda, neuron) or module:factory",
    ),
]
DelayOpt = Annotated[float, typer.Option(help="longest a request waits for its batch to fill (ms)")]
BatchOpt = Annotated[
    int, typer.Option(help="most requests per batch (0: the largest compiled batch size)")
]
CapacityOpt = Annotated[int, typer.Option(help="most requests queued per model; more get 429")]

# Queries of up to 16 tokens for the intent load (the real-time objective's workload).
SAMPLE_QUERIES = (
    "red running shoes size 10",
    "where is my order",
    "cancel my subscription",
    "usb c charger 65w",
    "how do i return a broken blender",
    "gift ideas for dad",
    "noise cancelling headphones",
    "kids bike with training wheels",
    "change delivery address",
    "organic green tea bags",
    "laptop stand adjustable aluminium",
    "is this jacket waterproof",
)


def build_router(
    models: ModelSet,
    *,
    max_batch_size: int = 0,
    max_queue_delay_ms: float = 2.0,
    queue_capacity: int = 1024,
    timeout_ms: float = 1000.0,
    workers: int | None = None,
    run_on_loop_when_idle: bool = False,
    idle_dispatch: bool = True,
) -> Router:
    """A router over `models` with one batching config applied to every model."""
    configs = {
        name: config_for(
            backend,
            max_batch_size=min(max_batch_size, backend.batch_sizes[-1]) if max_batch_size else 0,
            max_queue_delay_ms=max_queue_delay_ms,
            queue_capacity=queue_capacity,
            timeout_ms=timeout_ms,
            idle_dispatch=idle_dispatch,
        )
        for name, backend in models.backends.items()
    }
    return Router(
        models.backends,
        models.preprocessor,
        configs=configs,
        workers=workers or models.workers,
        run_on_loop_when_idle=run_on_loop_when_idle,
    )


def _load(backend: str, models: tuple[str, ...] = ("intent", "duplicate")) -> ModelSet:
    try:
        # Imported here: the registry needs torch, which only the inference extra installs.
        from stoker.app.inference_registry import load_models

        return load_models(backend, models=models)
    except ImportError as exc:
        message = f"model registry unavailable ({exc}); install the inference extra"
        Console(stderr=True).print(f"[red]{message}[/red]")
        raise typer.Exit(2) from exc
    except ConfigurationError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@app.command("serve")
def serve_cmd(
    *,
    backend: BackendOpt = "cpu",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    max_batch_size: BatchOpt = 0,
    max_queue_delay_ms: DelayOpt = 2.0,
    queue_capacity: CapacityOpt = 1024,
    timeout_ms: Annotated[float, typer.Option(help="default request deadline (ms)")] = 1000.0,
    workers: Annotated[
        int, typer.Option(help="batches run at once (0: one per replica of the backend)")
    ] = 0,
    drain_timeout_s: Annotated[float, typer.Option(help="longest drain on SIGTERM (s)")] = 30.0,
    idle_dispatch: Annotated[
        bool,
        typer.Option(
            help="when no batch is running, send a request to the model at once instead of "
            "waiting up to --max-queue-delay-ms for its batch to fill"
        ),
    ] = True,
    run_on_loop_when_idle: Annotated[
        bool,
        typer.Option(
            help="run a real-time batch that finds the router idle on the event loop's thread "
            "(no hand-off to a worker thread and back)"
        ),
    ] = True,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="serve the inference routes without bearer tokens (loopback addresses only)",
        ),
    ] = False,
) -> None:
    """Serve POST /v1/intent, POST /v1/duplicates, /healthz, /readyz and /metrics.

    The inference routes need a bearer token (a stoker token or an OIDC JWT, as for the jobs
    API; docs/security.md); health, readiness and metrics are open."""
    from stoker.inference.router.serve import serve

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    auth = None if no_auth else _authentication(settings)
    if no_auth and not _loopback(host):
        message = f"--no-auth serves only on a loopback address, not {host!r}"
        raise typer.BadParameter(message, param_hint="--host")
    router = build_router(
        _load(backend),
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        queue_capacity=queue_capacity,
        timeout_ms=timeout_ms,
        workers=workers or None,
        run_on_loop_when_idle=run_on_loop_when_idle,
        idle_dispatch=idle_dispatch,
    )
    from stoker.app.telemetry import traces_exported

    with traces_exported(settings, ["router"]):
        served = serve(
            router,
            host=host,
            port=port,
            drain_timeout_s=drain_timeout_s,
            authenticator=auth.authenticator if auth else None,
            rate_limiter=router_rate_limiter(settings),
            resources=auth.resources if auth else (),
        )
    if not served:
        Console(stderr=True).print(
            f"[red]drain did not finish within {drain_timeout_s:g} s; requests were dropped[/red]"
        )
        raise typer.Exit(1)


def _authentication(settings: Settings) -> Authentication:
    try:
        return router_authentication(settings)
    except ConfigurationError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def intent_body(i: int) -> bytes:
    return orjson.dumps({"query": SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)]})


def duplicates_body(i: int) -> bytes:
    a = SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)]
    b = SAMPLE_QUERIES[(i * 7 + 3) % len(SAMPLE_QUERIES)]
    return orjson.dumps({"pairs": [{"a": {"title": a}, "b": {"title": b}}]})


def result_table(title: str, results: list[LoadResult]) -> Table:
    table = Table(title=title)
    for column in ("rate/s", "sent", "ok", "throughput/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_column("other statuses")
    for r in results:
        ms = r.summary_ms()
        others = {k: v for k, v in r.statuses.items() if k != "200"}
        table.add_row(
            f"{r.rate:.0f}",
            str(r.sent),
            str(r.ok),
            f"{r.throughput:.0f}",
            *(f"{ms[k]:.2f}" for k in ("p50", "p95", "p99", "max")),
            ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "-",
        )
    return table


@app.command("load")
def load_cmd(
    *,
    url: Annotated[str, typer.Option(help="router base URL")] = "http://127.0.0.1:8080",
    rate: Annotated[float, typer.Option(help="mean arrivals per second (Poisson)")] = 200.0,
    duration_s: Annotated[float, typer.Option(help="how long to send (s)")] = 10.0,
    requests: Annotated[int, typer.Option(help="stop after this many (0: no limit)")] = 0,
    kind: Annotated[str, typer.Option(help="intent | duplicates")] = "intent",
    seed: Annotated[int, typer.Option(help="seed of the arrival process")] = 0,
    token: Annotated[
        str | None,
        typer.Option(
            help="bearer token sent with every request (default: STOKER_TOKEN, the config "
            "file, the data folder's api-token; none found: no Authorization header)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open-loop Poisson load; prints throughput and p50/p95/p99/max latency.

    Sends a bearer token with every request: --token, else STOKER_TOKEN, else the config
    file or the data dir's token file."""

    if kind not in ("intent", "duplicates"):
        raise typer.BadParameter(f"expected intent or duplicates, got {kind!r}", param_hint="kind")
    body = intent_body if kind == "intent" else duplicates_body
    result = asyncio.run(
        run_load(
            url,
            f"/v1/{kind}",
            body,
            rate=rate,
            duration_s=duration_s,
            max_requests=requests or None,
            seed=seed,
            headers=_authorization(token or find_token()),
        )
    )
    Console().print(result_table(f"{kind} at {rate:.0f}/s (open loop, Poisson)", [result]))


def _authorization(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@app.command("stream")
def stream_cmd(
    *,
    backend: BackendOpt = "cpu",
    group: Annotated[
        str, typer.Option(help="Faust app id: consumer group and transactional id prefix")
    ] = "stoker-duplicates",
    pairs_topic: Annotated[str | None, typer.Option(help="topic of pairs in")] = None,
    scores_topic: Annotated[str | None, typer.Option(help="topic of scores out")] = None,
    dead_letter_topic: Annotated[str | None, typer.Option(help="dead-letter topic")] = None,
    partitions: Annotated[
        int | None, typer.Option(help="partitions of the pairs topic (and the tables)")
    ] = None,
    max_batch: Annotated[int | None, typer.Option(help="records taken and scored together")] = None,
    max_queue_delay_ms: Annotated[
        float | None, typer.Option(help="longest a pair waits for its model batch to fill (ms)")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="port of the web views")] = None,
    log_level: Annotated[str, typer.Option(help="Faust worker log level")] = "warning",
) -> None:
    """Run the duplicate stream (a Faust worker) until SIGTERM; run more to scale out."""
    from stoker.stream.config import StreamSettings
    from stoker.stream.main import default_app, run_worker

    overrides = {
        "app_id": group,
        "backend": backend,
        "pairs_topic": pairs_topic,
        "scores_topic": scores_topic,
        "dead_letter_topic": dead_letter_topic,
        "partitions": partitions,
        "max_batch": max_batch,
        "max_queue_delay_ms": max_queue_delay_ms,
        "web_port": web_port,
    }
    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    stream = StreamSettings.model_validate({k: v for k, v in overrides.items() if v is not None})
    run_worker(default_app(settings, stream), log_level=log_level)


if __name__ == "__main__":
    app()
