"""Training backends for the lifecycle benchmark: the simulator over HTTP, or in-process.

`SageMakerBackend` against a `SimulatorServer` is the real path (aiobotocore, the AWS JSON
1.1 wire protocol, botocore's error parsing). `EngineBackend` calls the same simulator
engine directly, with the same request and answer shapes and the same error translation,
for measuring how much of a figure the HTTP hop costs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stoker.adapters.training.sagemaker import (
    PAGE_SIZE,
    SageMakerBackend,
    describe_from_response,
    translate_client_error,
)
from stoker.core.clock import Clock
from stoker.ports.training import (
    InvalidRequest,
    TrainingBackend,
    TrainingJobDescription,
    TrainingJobStatus,
    TrainingJobSummary,
)
from stoker.simulator.engine import SimulatedSageMaker, SimulatorError
from stoker.simulator.faults import FaultConfig
from stoker.simulator.server import SimulatorServer

TRANSPORTS = ("http", "inprocess")


class EngineBackend:
    """TrainingBackend over a SimulatedSageMaker in this process (no HTTP, no botocore I/O)."""

    def __init__(self, engine: SimulatedSageMaker) -> None:
        self.engine = engine
        self.calls: Counter[str] = Counter()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _handle(self, operation: str, body: dict[str, Any], name: str | None) -> dict[str, Any]:
        self.calls[operation] += 1
        try:
            return self.engine.handle(operation, body)
        except SimulatorError as exc:
            # The same ClientError botocore builds from the wire answer, so the adapter's own
            # translation decides what the error means.
            error = ClientError(
                {
                    "Error": {"Code": exc.code, "Message": exc.message},
                    "ResponseMetadata": {"HTTPStatusCode": exc.status},
                },
                operation,
            )
            raise translate_client_error(error, operation, name) from exc

    async def create_training_job(self, request: dict[str, Any]) -> str:
        name = request.get("TrainingJobName")
        if not isinstance(name, str):
            raise InvalidRequest("CreateTrainingJob: TrainingJobName is required")
        answer = self._handle("CreateTrainingJob", dict(request), name)
        return str(answer["TrainingJobArn"])

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        answer = self._handle("DescribeTrainingJob", {"TrainingJobName": name}, name)
        return describe_from_response(answer)

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        body: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
        if status_equals is not None:
            body["StatusEquals"] = status_equals.value
        if last_modified_time_after is not None:
            body["LastModifiedTimeAfter"] = last_modified_time_after.timestamp()
        if name_contains:
            body["NameContains"] = name_contains
        found: list[TrainingJobSummary] = []
        token: str | None = None
        while True:
            wanted = PAGE_SIZE if max_results is None else min(PAGE_SIZE, max_results - len(found))
            page = {**body, "MaxResults": wanted, **({"NextToken": token} if token else {})}
            if before_page is not None:
                await before_page()
            answer = self._handle("ListTrainingJobs", page, None)
            found.extend(
                TrainingJobSummary(
                    name=row["TrainingJobName"],
                    status=TrainingJobStatus(row["TrainingJobStatus"]),
                    last_modified_time=row["LastModifiedTime"],
                    creation_time=row["CreationTime"],
                    training_end_time=row.get("TrainingEndTime"),
                    secondary_status=row.get("SecondaryStatus"),
                )
                for row in answer["TrainingJobSummaries"]
            )
            token = answer.get("NextToken")
            if not token or (max_results is not None and len(found) >= max_results):
                return found

    async def stop_training_job(self, name: str) -> None:
        self._handle("StopTrainingJob", {"TrainingJobName": name}, name)


@asynccontextmanager
async def simulated_sagemaker(
    transport: str, faults: FaultConfig, clock: Clock | None = None
) -> AsyncIterator[tuple[TrainingBackend, SimulatedSageMaker]]:
    """A started backend on a fresh simulator, and the simulator's engine (for its stats)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if transport == "inprocess":
        engine = SimulatedSageMaker(faults, clock)
        yield EngineBackend(engine), engine
        return
    async with SimulatorServer(faults, clock=clock) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            yield backend, server.engine
        finally:
            await backend.close()
