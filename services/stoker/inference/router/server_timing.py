"""Server-Timing for any ASGI app: a request's phases in a response header.

The middleware stamps when the app received each HTTP request and puts a `RequestTiming`
in the request's state (`request.state.timing`, Starlette's per-request state); handlers
that care fill in the stamps of their own stages. When the response starts, a timing whose
stages were all reached is sent as a `Server-Timing` header; others add nothing.

    app.add_middleware(ServerTiming)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from stoker.inference.router.timing import RequestTiming, now

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_KEY = "timing"


class ServerTiming:
    """ASGI middleware adding `Server-Timing` to responses whose handler filled the stamps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timing = RequestTiming(received=now())
        scope.setdefault("state", {})[STATE_KEY] = timing

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing.responded = now()
                value = timing.server_timing()
                if value:
                    headers = list(message.get("headers", ()))
                    headers.append((b"server-timing", value.encode("ascii")))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, timed_send)
