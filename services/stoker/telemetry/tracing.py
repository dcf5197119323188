"""Spans around the work on a job, and the `traceparent` its events carry.

Off by default: then no span is made, and the work in hand only takes the `traceparent` of
the event it handles (one context variable set per record), so a job's events still share
its submission's trace id. When the process installs an OpenTelemetry tracer provider
(`install`, done by the composition root when OTLP export is configured:
docs/observability.md), each piece of work is a span, a child of the span that produced the
event it handles, and the events it writes name that span as their parent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from stoker.core.tracecontext import TraceParent, current_traceparent, new_span_id

Attributes = Mapping[str, str | int | float | bool]

_tracer: trace.Tracer | None = None


def install(provider: trace.TracerProvider) -> None:
    """Make spans with `provider`'s tracer from now on (process-wide)."""
    global _tracer  # noqa: PLW0603 - one tracer per process, as OpenTelemetry's own global
    _tracer = provider.get_tracer("stoker")


def uninstall() -> None:
    """Back to no spans (tests, and a process shutting its exporter down)."""
    global _tracer  # noqa: PLW0603
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


class _Current:
    """The cheap path: the event's `traceparent` becomes the work's, for as long as it runs."""

    __slots__ = ("_token", "_value")

    def __init__(self, value: str | None) -> None:
        self._value = value
        self._token: Any = None

    def __enter__(self) -> str | None:
        self._token = current_traceparent.set(self._value)
        return self._value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        current_traceparent.reset(self._token)


def handling(
    name: str, parent: str | None, attributes: Attributes | None = None
) -> Any:  # a context manager yielding the work's traceparent
    """Around the handling of an event whose trace context is `parent`: a consumer span
    when tracing is on, else only `parent` made current."""
    if _tracer is None:
        return _Current(parent)
    return span(name, parent=parent, attributes=attributes, kind=SpanKind.CONSUMER)


@contextmanager
def span(
    name: str,
    *,
    parent: str | None,
    attributes: Attributes | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[str]:
    """A piece of work in the trace of `parent` (a new trace when None); yields its
    `traceparent`, which is also current while it runs. Without tracing on, the value keeps
    `parent`'s trace id under a new span id, so events written here still join the trace."""
    if _tracer is None:
        parsed = TraceParent.parse(parent) if parent else None
        value = str(
            TraceParent.new() if parsed is None else TraceParent(parsed.trace_id, new_span_id())
        )
        token = current_traceparent.set(value)
        try:
            yield value
        finally:
            current_traceparent.reset(token)
        return
    with _tracer.start_as_current_span(
        name, context=_context_of(parent), kind=kind, attributes=attributes
    ) as made:
        context = made.get_span_context()
        value = str(
            TraceParent(
                f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{context.trace_flags:02x}"
            )
        )
        token = current_traceparent.set(value)
        try:
            yield value
        finally:
            current_traceparent.reset(token)


def _context_of(parent: str | None) -> Any:
    """An OpenTelemetry context whose current span is the remote parent `parent` names."""
    parsed = TraceParent.parse(parent) if parent else None
    if parsed is None:
        return None  # the span starts a new trace
    remote = SpanContext(
        trace_id=int(parsed.trace_id, 16),
        span_id=int(parsed.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parsed.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))
