"""A service process's telemetry: its Prometheus endpoint and, when configured, OTLP traces.

The endpoint is a port of its own (STOKER_METRICS_PORT, default 9464 on 127.0.0.1), not a
route of the API: every process has one whether or not it serves the API, Prometheus
scrapes it without a token, and it shows counts by topic, group, operation and channel kind
only, no job, owner, team or secret (docs/adr/0027-metrics-endpoint-and-trace-context.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import start_http_server

from stoker.settings import Settings
from stoker.telemetry import metrics, tracing

log = structlog.get_logger("stoker.telemetry")


@contextlib.contextmanager
def metrics_endpoint(host: str, port: int) -> Iterator[int | None]:
    """Serve GET /metrics of this process on host:port (port 0: none) while in the block;
    yields the port served. A port already taken is logged and the services run on without
    it: metrics are worth less than the jobs."""
    if port == 0:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.REGISTRY)
    except OSError as exc:
        log.error(
            "metrics endpoint not served; set STOKER_METRICS_PORT to a free port (0: none)",
            host=host,
            port=port,
            error=str(exc),
        )
        yield None
        return
    log.info("metrics endpoint serving", url=f"http://{host}:{port}/metrics")
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def otlp_configured(settings: Settings, environ: dict[str, str] | None = None) -> bool:
    """Whether spans are exported: STOKER_OTLP_ENDPOINT, or OpenTelemetry's own
    OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, unless OTEL_SDK_DISABLED=true."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        settings.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


@contextlib.contextmanager
def traces_exported(settings: Settings, services: Sequence[str]) -> Iterator[bool]:
    """While in the block, make spans and export them over OTLP/HTTP if configured (the
    `tracing` extra); yields whether they are. The exporter reads the other OTEL_* settings
    (headers, timeout, compression) itself."""
    if not otlp_configured(settings):
        yield False
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        from stoker.core.errors import ConfigurationError

        raise ConfigurationError(
            "OTLP export is configured (STOKER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_*) but the "
            "tracing extra is not installed: pip install 'stoker[tracing]'"
        ) from exc
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    provider = tracer_provider(exporter, services)
    tracing.install(provider)
    try:
        yield True
    finally:
        tracing.uninstall()
        provider.shutdown()  # exports the spans still batched


def tracer_provider(exporter: Any, services: Sequence[str], *, batch: bool = True) -> Any:
    """An SDK tracer provider exporting to `exporter` (batched, or span by span for tests).
    The service name is OTEL_SERVICE_NAME's, else `stoker` and the services run here."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or "stoker-" + "-".join(services)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    return provider
