"""Run the router's HTTP API under uvicorn with a graceful drain on SIGTERM.

On SIGTERM (or SIGINT) readiness goes false at once and new requests get 503, while
every request already queued or running is answered; uvicorn then closes its
connections and the app's lifespan drains and stops the batching loop.

A drain that answered everything is a successful end: `serve` returns True and the
process exits 0. (uvicorn by itself re-raises the signal after its shutdown, which ends
the process "killed by SIGTERM" even when nothing went wrong.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import FrameType

import uvicorn

from stoker.core.ratelimit import RateLimiter
from stoker.inference.router.app import create_app
from stoker.inference.router.router import Router
from stoker.ports.auth import Authenticator
from stoker.ports.resource import Resource


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, router: Router) -> None:
        super().__init__(config)
        self._router = router
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler can run between any two bytecodes of the loop's thread: hand the
        # state change to the loop instead of touching the queues from here.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._router.begin_drain)
        super().handle_exit(sig, frame)
        # The signal is handled here, by draining; uvicorn must not raise it again on exit.
        self._captured_signals.clear()


def serve(
    router: Router,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    drain_timeout_s: float = 30.0,
    warm: bool = True,
    authenticator: Authenticator | None = None,
    rate_limiter: RateLimiter | None = None,
    resources: Sequence[Resource] = (),
) -> bool:
    """Serve until SIGTERM/SIGINT, then drain. Blocks. False only when the drain gave up on
    accepted requests after `drain_timeout_s`. The authentication arguments are those of
    `create_app`."""
    app = create_app(
        router,
        warm=warm,
        drain_timeout_s=drain_timeout_s,
        authenticator=authenticator,
        rate_limiter=rate_limiter,
        resources=resources,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        # httptools and uvloop when installed (uvicorn[standard]); the pure-Python
        # fallbacks otherwise.
        http="auto",
        loop="auto",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(drain_timeout_s),
    )
    _DrainingServer(config, router).run()
    # None: stopped before serving (during warm-up), so no request was accepted or dropped.
    return router.drained_completely is not False
