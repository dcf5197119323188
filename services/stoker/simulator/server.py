"""The simulator's HTTP face: SageMaker's AWS JSON 1.1 protocol, as botocore speaks it.

Requests are `POST /` with `X-Amz-Target: SageMaker.<Operation>` and a JSON body; answers
are JSON with timestamps as epoch seconds; errors are `{"__type", "message"}` with HTTP 400
(or 500 for internal faults). Signatures are not checked. `GET /_sim/stats` returns the
call counts, including CreateTrainingJob requests per job name.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from stoker.core.clock import Clock
from stoker.logs import get_logger
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.errors import SimulatorError
from stoker.simulator.faults import FaultConfig

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "SageMaker."

log = get_logger("stoker.simulator")


def _encode(value: object) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _answer(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, default=_encode).encode(),
        headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def build_app(engine: SimulatedSageMaker) -> web.Application:
    """The aiohttp application serving `engine`."""

    async def api(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return _answer(
                400, {"__type": "UnknownOperationException", "message": f"bad target {target!r}"}
            )
        operation = target.removeprefix(TARGET_PREFIX)
        try:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise SimulatorError("SerializationException", "the body must be a JSON object")
            return _answer(200, engine.handle(operation, body))
        except json.JSONDecodeError:
            return _answer(400, {"__type": "SerializationException", "message": "invalid JSON"})
        except SimulatorError as exc:
            if exc.status >= 500:
                log.warning("simulated internal error", operation=operation)
            return _answer(exc.status, {"__type": exc.code, "message": exc.message})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {**engine.stats.as_dict(), "peak_instances_in_use": engine.peak_instances_in_use()}
        )

    app = web.Application()
    app.router.add_post("/", api)
    app.router.add_get("/_sim/stats", stats)
    return app


class SimulatorServer:
    """The simulator on a loopback port, inside the current event loop (for tests and demos).

    `port=0` picks a free port; read `url` after `start()`.
    """

    def __init__(
        self,
        faults: FaultConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.engine = SimulatedSageMaker(faults, clock)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        runner = web.AppRunner(build_app(self.engine), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1] if runner.addresses else self._port
        self.url = f"http://{self._host}:{port}"
        log.info("sagemaker simulator listening", url=self.url)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
