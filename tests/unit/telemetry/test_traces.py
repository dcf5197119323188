"""Spans when tracing is on: the submission, the handling of each event and the events
written meanwhile form one trace; OTLP export goes to the configured endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.app.telemetry import otlp_configured, tracer_provider, traces_exported
from stoker.bus.consumer import Consumer
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.core.events import CloudEvent, JobStatusChanged, decode_event
from stoker.core.job import JobChange, JobStatus
from stoker.core.spec import JobSpec
from stoker.core.tracecontext import TraceParent
from stoker.inference.router.app import create_app
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from stoker.settings import Settings
from stoker.telemetry import tracing
from tests.support.events import TopicReader
from tests.unit.lifecycle.conftest import spec
from tests.unit.router.test_app import make_router


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span exported at once to memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = tracer_provider(exporter, ["test"], batch=False)
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


async def test_submission_handling_and_the_events_written_form_one_trace(
    spans: InMemorySpanExporter,
) -> None:
    """The submission is a span; the consumer's handling of the job's New event is its
    child; the event written while handling names the handling span as its parent."""
    clock = FakeClock()
    bus, store = MemoryBus(), MemoryJobStore()
    await bus.start()
    await store.start()
    transitioner = Transitioner(store, bus)
    jobs = JobService(transitioner, clock)
    job, _ = await jobs.submit(JobSpec.model_validate(spec("traced-1")))
    await transitioner.flush()

    async def launch(event: CloudEvent, _record: BusRecord) -> None:
        if isinstance(event.data, JobStatusChanged) and event.data.to_status is JobStatus.NEW:
            current = await store.get(event.data.job_id)
            await transitioner.move(
                current, JobChange(to_status=JobStatus.LAUNCHING, at=clock.now())
            )

    consumer = Consumer.for_events(bus, "traced-launcher", [topics.LIFECYCLE], launch)
    try:
        assert await consumer.run_once() == 1
    finally:
        await consumer.close()
    await transitioner.flush()

    finished = {span.name: span for span in spans.get_finished_spans()}
    submit = finished["stoker.job.submit"]
    handling = finished["stoker.job.status-changed.v1 process"]
    trace_id = f"{submit.context.trace_id:032x}"
    assert job.details["trace_id"] == trace_id
    assert handling.context.trace_id == submit.context.trace_id
    assert handling.parent is not None
    assert handling.parent.span_id == submit.context.span_id
    assert handling.attributes is not None
    assert handling.attributes["messaging.destination.name"] == topics.LIFECYCLE

    reader = TopicReader(bus, topics.LIFECYCLE)
    await reader.read_all()
    await reader.close()
    by_status = {
        e.data.to_status: TraceParent.parse(e.traceparent or "")
        for e in (decode_event(r.value) for r in reader.records)
        if isinstance(e.data, JobStatusChanged)
    }
    new, launching = by_status[JobStatus.NEW], by_status[JobStatus.LAUNCHING]
    assert new is not None
    assert new.span_id == f"{submit.context.span_id:016x}"
    assert launching is not None
    assert launching.span_id == f"{handling.context.span_id:016x}"
    assert {new.trace_id, launching.trace_id} == {trace_id}


def test_otlp_export_is_off_unless_configured() -> None:
    """No endpoint, no spans; STOKER_OTLP_ENDPOINT or OpenTelemetry's own variables turn
    export on, and OTEL_SDK_DISABLED=true keeps it off."""
    plain = Settings()
    assert not otlp_configured(plain, {})
    assert otlp_configured(Settings(otlp_endpoint="http://127.0.0.1:4318/v1/traces"), {})
    assert otlp_configured(plain, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert otlp_configured(plain, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t"})
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert not otlp_configured(plain, disabled)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver on loopback: keeps each export request's body."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append((self.path, self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_spans_go_to_the_configured_otlp_endpoint(tmp_path: Path) -> None:
    """With STOKER_OTLP_ENDPOINT set, a service's spans reach that endpoint as OTLP/HTTP
    protobuf, named after the services of the process, when the process stops."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        settings = Settings(data_dir=tmp_path, otlp_endpoint=url)
        with traces_exported(settings, ["launcher"]) as exporting:
            assert exporting
            assert tracing.enabled()
            with tracing.span("stoker.job.launch", parent=None, attributes={"job.id": "j"}):
                pass
        assert not tracing.enabled()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    bodies: list[tuple[str, bytes]] = server.bodies  # type: ignore[attr-defined]
    assert [path for path, _ in bodies] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(bodies[0][1])
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "stoker-launcher"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["stoker.job.launch"]


async def test_a_router_request_joins_the_callers_trace(spans: InMemorySpanExporter) -> None:
    """POST /v1/intent with a `traceparent` header is a server span in the caller's trace,
    a child of the caller's span."""
    router, _ = make_router()
    app = create_app(router)
    caller = TraceParent.new()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            reply = await client.post(
                "/v1/intent", json={"query": "red shoes"}, headers={"traceparent": str(caller)}
            )
    assert reply.status_code == 200
    (span,) = [s for s in spans.get_finished_spans() if s.name == "stoker.router.intent"]
    assert f"{span.context.trace_id:032x}" == caller.trace_id
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == caller.span_id
