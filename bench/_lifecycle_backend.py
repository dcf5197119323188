"""Training backends for the lifecycle benchmark: the simulator over HTTP, or in-process.

Both are `SageMakerBackend`, the adapter stoker runs against SageMaker. Over HTTP it talks
to a `SimulatorServer` through aiobotocore (the AWS JSON 1.1 wire protocol, botocore's error
parsing). In-process it is handed an `EngineClient` that answers the same operations from
the simulator engine directly, so the request building, paging, parsing and error
translation are the adapter's own and only the HTTP hop is missing (for measuring how much
of a figure that hop costs, and for virtual time, where a request on a socket would be
invisible to the clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.clock import Clock
from stoker.ports.training import TrainingBackend
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.errors import SimulatorError
from stoker.simulator.faults import FaultConfig
from stoker.simulator.server import SimulatorServer

if TYPE_CHECKING:
    from types_aiobotocore_sagemaker import SageMakerClient

TRANSPORTS = ("http", "inprocess")


class EngineClient:
    """The SageMaker client operations the backend calls, answered by an engine in this
    process: timestamps in a request become epoch seconds, as on the wire, and an error
    becomes the ClientError botocore builds from the wire answer.

    `yield_per_call`: each call first lets the event loop run other tasks, as a call on a
    socket does. Without it a monitor pass listing a hundred pages ran as one piece and held
    up every other task of the process, which no network client does. Off on a virtual
    clock (part (b)): it moves time once every task is asleep, and counts on in-process
    calls finishing in place."""

    def __init__(self, engine: SimulatedSageMaker, *, yield_per_call: bool = True) -> None:
        self.engine = engine
        self._yield_per_call = yield_per_call

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if self._yield_per_call:
            await asyncio.sleep(0)
        body = {k: v.timestamp() if isinstance(v, datetime) else v for k, v in params.items()}
        try:
            return self.engine.handle(operation, body)
        except SimulatorError as exc:
            error = {
                "Error": {"Code": exc.code, "Message": exc.message},
                "ResponseMetadata": {"HTTPStatusCode": exc.status},
            }
            raise ClientError(error, operation) from exc  # type: ignore[arg-type]

    async def create_training_job(self, **params: Any) -> dict[str, Any]:
        return await self._call("CreateTrainingJob", params)

    async def describe_training_job(self, **params: Any) -> dict[str, Any]:
        return await self._call("DescribeTrainingJob", params)

    async def list_training_jobs(self, **params: Any) -> dict[str, Any]:
        return await self._call("ListTrainingJobs", params)

    async def stop_training_job(self, **params: Any) -> dict[str, Any]:
        return await self._call("StopTrainingJob", params)


@asynccontextmanager
async def simulated_sagemaker(
    transport: str, faults: FaultConfig, clock: Clock | None = None
) -> AsyncIterator[tuple[TrainingBackend, SimulatedSageMaker]]:
    """A started backend on a fresh simulator, and the simulator's engine (for its stats)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if transport == "inprocess":
        engine = SimulatedSageMaker(faults, clock)
        client = cast("SageMakerClient", EngineClient(engine, yield_per_call=clock is None))
        yield SageMakerBackend(client=client), engine
        return
    async with SimulatorServer(faults, clock=clock) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            yield backend, server.engine
        finally:
            await backend.close()
