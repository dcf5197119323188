"""Where one request's time went inside the router, as `perf_counter` stamps.

The router fills a `RequestTiming` as the request moves (tokenized, batch formed, model
started and finished on the worker, reply delivered); the HTTP layer adds when the request
reached the app and when its response started, and sends the phases as a `Server-Timing`
header (W3C Server Timing), so a client measures its own end-to-end latency and reads the
server's share from the same reply, with no second request and no log to join.

`perf_counter` is one clock for every thread of the process (CLOCK_MONOTONIC on Linux), so
a stamp taken on a worker thread compares with one taken on the event loop.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

PHASES = ("http", "tok", "queue", "dispatch", "model", "return", "reply")
"""The Server-Timing metric names, in request order:

http      the app received the request, to the intent handler (body, routing, validation, auth)
tok       tokenizing the text
queue     queued, to its batch being formed (waiting for a worker or for the batch to fill)
dispatch  batch formed, to the model starting on its worker (padding, the thread hand-off)
model     `ModelBackend.run` on the worker
return    the model finished, to the reply set on the caller's future (the hand-back)
reply     the caller resumed, to the response starting (building and serializing it)
"""

TOTAL = "total"
"""Server-Timing name of the sum of the phases: the app's whole share of the request."""


def now() -> float:
    """The stamp clock (seconds)."""
    return time.perf_counter()


@dataclass(slots=True)
class RequestTiming:
    """Stamps (perf_counter seconds) of one request; 0.0 where a stage was not reached."""

    received: float = 0.0
    """The app (ASGI) received the request."""
    handled: float = 0.0
    """The route's handler started."""
    tokenized: float = 0.0
    formed: float = 0.0
    """Its batch was formed (the queue wait ended)."""
    run_started: float = 0.0
    run_ended: float = 0.0
    delivered: float = 0.0
    """The reply was set on the caller's future."""
    responded: float = 0.0
    """The response started (headers about to be sent)."""

    def phases_ms(self) -> dict[str, float]:
        """Milliseconds per phase of `PHASES`, plus `TOTAL`; only when every stamp is set."""
        stamps = (
            self.received, self.handled, self.tokenized, self.formed, self.run_started,
            self.run_ended, self.delivered, self.responded,
        )  # fmt: skip
        if any(s == 0.0 for s in stamps):
            return {}
        phases = {
            name: (later - earlier) * 1000.0
            for name, earlier, later in zip(PHASES, stamps[:-1], stamps[1:], strict=True)
        }
        phases[TOTAL] = (self.responded - self.received) * 1000.0
        return phases

    def server_timing(self) -> str:
        """The `Server-Timing` header value (durations in ms); empty if incomplete."""
        return ", ".join(f"{name};dur={ms:.3f}" for name, ms in self.phases_ms().items())


def parse_server_timing(value: str) -> dict[str, float]:
    """`name;dur=ms` entries of a Server-Timing header (others and bad ones are skipped)."""
    out: dict[str, float] = {}
    for entry in value.split(","):
        name, _, params = entry.strip().partition(";")
        for param in params.split(";"):
            key, _, raw = param.strip().partition("=")
            if key == "dur":
                with contextlib.suppress(ValueError):
                    out[name] = float(raw)
    return out
