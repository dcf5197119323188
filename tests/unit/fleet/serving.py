"""Serving an app under uvicorn in a thread of its own (with its own event loop), so a test
can call it with blocking clients such as boto3."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

START_S = 60.0


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a free loopback port until the block ends; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        box["server"] = server
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        # uvicorn offers no start event: its `started` flag is polled until set.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        ready.set()
        await serving

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(START_S), "the endpoint did not start"
        assert box["server"].started, "the endpoint did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        if "server" in box:
            box["server"].should_exit = True
        thread.join(START_S)
        sock.close()
