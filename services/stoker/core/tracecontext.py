"""W3C Trace Context (`traceparent`) values, as the CloudEvents distributed tracing extension
carries them. Pure: formats, parses, and the context of the event being handled.

A job's trace starts at its submission and its id is kept in the job's `details`
(`trace_id`, `traceparent`), so every later event of the job, whichever service writes it and
however long after, belongs to the same trace (docs/observability.md).
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TRACEPARENT_PATTERN = _TRACEPARENT.pattern
"""The version-00 form: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`."""

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """One `traceparent` value: the trace, the span that caused this, whether it is sampled."""

    trace_id: str
    span_id: str
    flags: str = "01"

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def new(cls) -> TraceParent:
        """A new trace (random ids, as the W3C recommendation asks), sampled.

        Ids identify, they protect nothing: the process's pseudo-random generator serves (as
        OpenTelemetry's own id generator does), without a system call for every job."""
        return cls(f"{random.getrandbits(128) or 1:032x}", new_span_id())

    @classmethod
    def parse(cls, value: str) -> TraceParent | None:
        """The value, or None if it is not a valid version-00 traceparent (an invalid one is
        dropped, as Trace Context says, rather than failing the request that carried it)."""
        match = _TRACEPARENT.match(value.strip().lower())
        if match is None:
            return None
        trace_id, span_id, flags = match.groups()
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, flags)


current_traceparent: ContextVar[str | None] = ContextVar("stoker_traceparent", default=None)
"""The `traceparent` of the work in hand (the event being handled, or the span around it):
events built meanwhile carry it (`CloudEvent.wrap`)."""


def new_span_id() -> str:
    """A random span id (never all zeros, the one invalid id)."""
    return f"{random.getrandbits(64) or 1:016x}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a `traceparent` value (None if there is none or it is invalid)."""
    if not traceparent:
        return None
    parsed = TraceParent.parse(traceparent)
    return None if parsed is None else parsed.trace_id
