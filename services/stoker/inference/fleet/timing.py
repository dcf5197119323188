"""Where one invocation's time went, as `perf_counter` stamps, and its Server-Timing header.

The HTTP route, the fleet and the worker each stamp the request as it passes them; the
phases between the stamps are sent as a `Server-Timing` header (W3C Server Timing), so a
client reads the server's share of each reply from the reply itself. The worker's stamps are
taken in another process: `perf_counter` is CLOCK_MONOTONIC on Linux, one clock for every
process of the machine, so they compare with the parent's.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("http", "lookup", "send", "queue", "parse", "model", "return", "resume", "reply")
"""The Server-Timing metric names, in request order:

http     the app received the request, to the fleet's invoke (routing, auth, reading the body)
lookup   the cache lookup and the choice of worker (a cold load, if any, is in here)
send     pickling the call
queue    pickled, to the worker starting on it: writing it to the socket, the worker waking
         up and reading it, and the wait behind the calls sent to that worker before it
         (its queue)
parse    the handler's `parse_request` in the worker
model    the handler's `predict` in the worker
return   pickling the answer, the socket back, the parent's reader waking up with it
resume   the answer set on the caller's future, to the caller running again (the loop's turn)
reply    the fleet's answer, to the response built (metrics, headers)
"""

TOTAL = "total"
"""Server-Timing name of the sum of the phases."""


@dataclass(frozen=True, slots=True)
class WorkerStamps:
    """A prediction's stamps on both sides of the worker's socket."""

    sent: float
    """The call was pickled, about to be written to the socket (parent)."""
    picked: float
    """The worker started on the call, or on the batch it is part of (worker)."""
    predict_started: float
    """`parse_request` done, `predict` starting (worker)."""
    predict_ended: float
    """`predict` returned (worker)."""
    delivered: float
    """The answer was set on the caller's future (parent)."""


@dataclass(frozen=True, slots=True)
class InvokeStamps:
    """One invocation's stamps in the fleet: `invoked` to `answered`, around the worker's."""

    invoked: float
    looked_up: float
    """The model's copy and worker chosen; the call about to be sent."""
    worker: WorkerStamps
    answered: float
    """The caller resumed with the worker's answer."""


def phases_ms(received: float, stamps: InvokeStamps, responded: float) -> dict[str, float]:
    """Milliseconds per phase of `PHASES`, plus `TOTAL`; `received` and `responded` are the
    HTTP layer's stamps around the fleet's."""
    w = stamps.worker
    points = (
        received, stamps.invoked, stamps.looked_up, w.sent, w.picked, w.predict_started,
        w.predict_ended, w.delivered, stamps.answered, responded,
    )  # fmt: skip
    phases = {
        name: (later - earlier) * 1000.0
        for name, earlier, later in zip(PHASES, points[:-1], points[1:], strict=True)
    }
    phases[TOTAL] = (responded - received) * 1000.0
    return phases


def server_timing(phases: dict[str, float]) -> str:
    """The `Server-Timing` header value of `phases` (durations in ms)."""
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in phases.items())
