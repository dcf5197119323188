"""The two servers the router bench drives with the same client: stoker and Ray Serve.

Both serve POST /v1/intent on loopback with the same model object from the registry, the
same batch cap, the same queue delay and the same static-shape padding.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from stoker.app.inference_registry import load_models
from stoker.inference.router.policy import BatchingConfig
from stoker.inference.router.router import config_for

REPO = Path(__file__).resolve().parents[1]
console = Console(width=150)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(
    url: str, body: bytes, timeout_s: float, proc: subprocess.Popen[bytes] | None
) -> None:
    """Until one intent request is answered 200 (the server warms every shape first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode} before it was ready")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout_s} s")
        time.sleep(0.5)  # polling a server that is still starting


@contextmanager
def stoker_server(
    backend: str,
    *,
    batch_cap: int,
    delay_ms: float,
    body: bytes,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`stoker router serve` in its own process; yields the intent URL."""
    port = free_port()
    environ = {
        **os.environ,
        "STOKER_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO)]),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "stoker.cli.router", "serve", "--backend", backend,
            "--port", str(port), "--max-batch-size", str(batch_cap),
            "--max-queue-delay-ms", str(delay_ms), "--timeout-ms", "1000",
            "--no-auth",  # the peer has no authentication either; loopback only
            *extra_args,
        ],
        cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/intent"
    try:
        wait_ready(url, body, 600, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            console.print(f"[red]stoker server exited {proc.returncode}[/red]\n{err.decode()}")


@contextmanager
def ray_server(backend: str, *, batch_cap: int, delay_ms: float, body: bytes) -> Iterator[str]:
    """Ray Serve, `@serve.batch`, the same model object behind a plain HTTP route."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(num_replicas=1, max_ongoing_requests=1024)
    class Intent:
        def __init__(self, spec: str) -> None:
            models = load_models(spec, models=("intent",))
            self.backend = models.backends["intent"]
            self.pre = models.preprocessor
            self.cfg: BatchingConfig = config_for(self.backend)
            self.backend.warm()

        @serve.batch(max_batch_size=batch_cap, batch_wait_timeout_s=delay_ms / 1000)
        async def classify(self, queries: list[str]) -> list[dict[str, Any]]:
            # Same static shapes as stoker: one bucket for the batch, rows padded up.
            tokens = [self.pre.encode(q, max_len=self.cfg.max_seq_len) for q in queries]
            seq = self.cfg.bucket_for(max(t.length for t in tokens))
            size = self.cfg.padded_size(len(tokens))
            rows = self.backend.run(self.pre.pad(tokens, batch_size=size, seq_len=seq))
            labels = self.backend.labels
            return [
                {"intent": labels[max(range(len(r)), key=r.__getitem__)],
                 "scores": dict(zip(labels, r, strict=True))}
                for r in rows
            ]  # fmt: skip

        async def __call__(self, request: Request) -> JSONResponse:
            payload = await request.json()
            return JSONResponse(await self.classify(payload["query"]))

    port = free_port()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "services"), str(REPO)])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # The decorator makes the class a Deployment; its typing still shows the class.
        deployment: Any = Intent
        serve.run(deployment.bind(backend), route_prefix="/v1/intent")
        url = f"http://127.0.0.1:{port}/v1/intent"
        wait_ready(url, body, 600, None)
        yield url
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
