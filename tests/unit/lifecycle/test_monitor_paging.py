"""The monitor paces every page of a ListTrainingJobs pass, not just the first request.

Runs against the SageMaker-API simulator (in this process, over HTTP with aiobotocore)
with its throttle on the same fake clock as the monitor, so no time really passes.
"""

from __future__ import annotations

from typing import Any

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.clock import FakeClock
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.naming import training_job_name
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.transitions import Transitioner
from stoker.simulator.faults import FaultConfig
from stoker.simulator.server import SimulatorServer

JOBS = 201  # three pages of ListTrainingJobs: more than the throttle's burst of two
GIVE_UP_S = 3600.0


class Livelock(Exception):
    """The monitor kept waiting far longer than the pass can need."""


def _request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::000000000000:role/x",
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


async def test_a_pass_listing_more_pages_than_the_burst_completes_without_throttles() -> None:
    """201 running jobs list as three pages under a 2-requests/s throttle (burst 2): the
    pass takes a token per page, so it finishes, sees every job, and is never throttled
    (before, one token covered the whole listing, page three was throttled, and the
    retried listing was throttled again at the same page forever)."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        if clock.monotonic() > GIVE_UP_S:
            raise Livelock(f"still waiting after {clock.monotonic():.0f} simulated s")
        clock.advance(max(seconds, 1e-6))

    faults = FaultConfig(startup_s=0, throttle_rps=2, throttle_burst=2)
    async with SimulatorServer(faults, clock=clock) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            store, bus = MemoryJobStore(), MemoryBus()
            await bus.start()
            transitioner = Transitioner(store, bus)
            for n in range(JOBS):
                job_id = f"job-{n:03d}"
                name = training_job_name(job_id, 1)
                server.engine.create_training_job(_request(name))
                now = clock.now()
                job, _ = await transitioner.create(
                    JobRecord(
                        job_id=job_id,
                        owner="ana",
                        spec={"training": _request(name)},
                        created_at=now,
                        updated_at=now,
                    )
                )
                job = await transitioner.move(
                    job,
                    JobChange(
                        to_status=JobStatus.LAUNCHING,
                        at=now,
                        attempt=1,
                        details={"training_job_name": name},
                    ),
                )
                await transitioner.move(job, JobChange(to_status=JobStatus.LAUNCHED, at=now))
            monitor = Monitor(
                transitioner,
                backend,
                clock,
                MonitorConfig(api_rate_per_s=2, api_burst=2),
                sleep=sleep,
            )
            await monitor.recover()

            handled = await monitor.poll_once()

            assert handled == JOBS
            page = await store.list_jobs(status=JobStatus.IN_PROGRESS, limit=JOBS)
            assert len(page.items) == JOBS
            assert server.engine.stats.requests["ListTrainingJobs"] == 3
            assert dict(server.engine.stats.throttled) == {}
        finally:
            await backend.close()
