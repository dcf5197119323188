"""The SageMaker adapter's client limits its own rate once the API throttles it (botocore's
adaptive retry mode), against the simulator over the wire."""

from __future__ import annotations

import asyncio

import pytest

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.ports.training import Throttled
from stoker.simulator import FaultConfig, SimulatorServer

pytestmark = pytest.mark.integration


async def test_after_a_throttle_the_client_holds_its_requests_back() -> None:
    """Requests sent back to back at an API throttled to 5/s: after the first refusals the
    client waits before sending, so most requests are answered instead of refused (without
    the limiter, nearly every request in the run is refused)."""
    async with SimulatorServer(FaultConfig(throttle_rps=5, throttle_burst=5)) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        answered = throttled = 0
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.0
            while loop.time() < end:
                try:
                    await backend.list_training_jobs(max_results=1)
                    answered += 1
                except Throttled:
                    throttled += 1
        finally:
            await backend.close()
    assert answered >= 5
    assert throttled < answered
    assert server.engine.stats.throttled["ListTrainingJobs"] == throttled
