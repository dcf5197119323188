"""The SageMaker-API simulator over the wire: injected faults reach the unmodified
aiobotocore client and come out of the SageMaker adapter as the right stoker errors."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.clock import FakeClock
from stoker.core.failures import FailureClassifier
from stoker.devinfra import free_ports
from stoker.ports.training import (
    ResourceLimitExceeded,
    ServiceUnavailable,
    Throttled,
    TrainingJobAlreadyExists,
    TrainingJobStatus,
)
from stoker.simulator import DurationSpec, FaultConfig, SimulatorServer
from tests.support.waiting import poll_until

TEN_MINUTES = DurationSpec(kind="fixed", seconds=600)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: the simulator does not check signatures, botocore needs some."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stoker-local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stoker-local")


class Sim:
    """A simulator on a fake clock and a SageMaker adapter pointed at it."""

    def __init__(self, server: SimulatorServer, backend: SageMakerBackend, clock: FakeClock):
        self.server = server
        self.backend = backend
        self.clock = clock


async def started(faults: FaultConfig) -> AsyncIterator[Sim]:
    clock = FakeClock()
    async with SimulatorServer(faults, clock=clock) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            yield Sim(server, backend, clock)
        finally:
            await backend.close()


def request(name: str, instance_type: str = "ml.m5.large", **hp: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
        "HyperParameters": hp,
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def unique() -> str:
    return f"wire-{uuid.uuid4().hex[:8]}"


async def create_a_second_apart(sim: Sim, count: int) -> list[str]:
    """`count` training jobs created one simulated second apart; their names, oldest first."""
    names = []
    for _ in range(count):
        names.append(unique())
        await sim.backend.create_training_job(request(names[-1]))
        sim.clock.advance(1)
    return names


async def test_requests_above_the_rate_are_throttled() -> None:
    """Above throttle_rps the API answers ThrottlingException, seen as a retriable Throttled;
    after a second the budget is back."""
    async for sim in started(FaultConfig(throttle_rps=1, throttle_burst=2)):
        await sim.backend.list_training_jobs()
        await sim.backend.list_training_jobs()
        with pytest.raises(Throttled) as caught:
            await sim.backend.list_training_jobs()
        assert caught.value.retriable
        sim.clock.advance(1.0)
        await sim.backend.list_training_jobs()
        assert sim.server.engine.stats.throttled["ListTrainingJobs"] == 1


async def test_the_quota_turns_into_back_pressure() -> None:
    """Above the instance quota CreateTrainingJob fails with ResourceLimitExceeded (retriable,
    back-pressure); once a running job ends the same request is accepted."""
    faults = FaultConfig(instance_quota={"ml.p3.2xlarge": 2}, duration=TEN_MINUTES, startup_s=0)
    async for sim in started(faults):
        for _ in range(2):
            await sim.backend.create_training_job(request(unique(), "ml.p3.2xlarge"))
        third = unique()
        with pytest.raises(ResourceLimitExceeded) as caught:
            await sim.backend.create_training_job(request(third, "ml.p3.2xlarge"))
        assert caught.value.retriable
        assert caught.value.back_pressure
        await sim.backend.create_training_job(request(unique(), "ml.m5.large"))
        sim.clock.advance(601)
        await sim.backend.create_training_job(request(third, "ml.p3.2xlarge"))


async def test_capacity_errors_fail_the_job_shortly_after_start() -> None:
    """With a capacity error rate of 1 for an instance type, its jobs fail after startup
    with a CapacityError reason the rules retry; other types still complete."""
    faults = FaultConfig(
        capacity_error_rate_by_instance_type={"ml.p4d.24xlarge": 1.0},
        duration=TEN_MINUTES,
        startup_s=60,
    )
    async for sim in started(faults):
        short, fine = unique(), unique()
        await sim.backend.create_training_job(request(short, "ml.p4d.24xlarge"))
        await sim.backend.create_training_job(request(fine, "ml.g5.xlarge"))
        assert (
            await sim.backend.describe_training_job(short)
        ).status is TrainingJobStatus.IN_PROGRESS
        sim.clock.advance(61)
        failed = await sim.backend.describe_training_job(short)
        assert failed.status is TrainingJobStatus.FAILED
        assert failed.failure_reason is not None
        assert failed.failure_reason.startswith("CapacityError:")
        assert FailureClassifier().classify(reason=failed.failure_reason).retry
        sim.clock.advance(600)
        done = await sim.backend.describe_training_job(fine)
        assert done.status is TrainingJobStatus.COMPLETED
        assert done.billable_seconds == 600


async def test_algorithm_errors_are_injected_at_a_rate() -> None:
    """With an algorithm error rate of 1 every job fails with an AlgorithmError reason,
    which the default rules do not retry."""
    async for sim in started(FaultConfig(algorithm_error_rate=1.0, duration=TEN_MINUTES)):
        name = unique()
        await sim.backend.create_training_job(request(name))
        sim.clock.advance(3600)
        failed = await sim.backend.describe_training_job(name)
        assert failed.status is TrainingJobStatus.FAILED
        assert failed.failure_reason is not None
        assert failed.failure_reason.startswith("AlgorithmError:")
        assert not FailureClassifier().classify(reason=failed.failure_reason).retry


async def test_internal_errors_are_service_unavailable() -> None:
    """HTTP 500 answers come out as a retriable ServiceUnavailable."""
    async for sim in started(FaultConfig(internal_error_rate=1.0)):
        with pytest.raises(ServiceUnavailable) as caught:
            await sim.backend.describe_training_job(unique())
        assert caught.value.retriable


async def test_create_requests_per_name_are_counted_and_served() -> None:
    """The simulator counts CreateTrainingJob requests and created jobs per name, in process
    and at GET /_sim/stats, so tests can assert one job per name and attempt."""
    async for sim in started(FaultConfig()):
        name = unique()
        await sim.backend.create_training_job(request(name))
        with pytest.raises(TrainingJobAlreadyExists):
            await sim.backend.create_training_job(request(name))
        stats = sim.server.engine.stats
        assert stats.create_requests[name] == 2
        assert stats.created[name] == 1
        async with httpx.AsyncClient() as http:
            served = (await http.get(f"{sim.server.url}/_sim/stats")).json()
        assert served["created"] == {name: 1}
        assert served["max_created_per_name"] == 1


async def test_stop_requests_are_counted_apart_from_those_that_came_after_the_end() -> None:
    """A stop that reaches a running job and one refused because the job had ended are
    counted apart; the adapter takes the refusal as nothing left to stop."""
    async for sim in started(FaultConfig(duration=TEN_MINUTES)):
        running, ended = unique(), unique()
        await sim.backend.create_training_job(request(ended))
        sim.clock.advance(3600)
        await sim.backend.create_training_job(request(running))
        await sim.backend.stop_training_job(running)
        await sim.backend.stop_training_job(ended)
        async with httpx.AsyncClient() as http:
            served = (await http.get(f"{sim.server.url}/_sim/stats")).json()
        assert served["stop_requests"] == {running: 1}
        assert served["stops_after_end"] == {ended: 1}


async def test_listing_pages_with_next_token() -> None:
    """ListTrainingJobs pages through NextToken without losing or repeating a job, newest
    first, and LastModifiedTimeAfter keeps only later changes."""
    async for sim in started(FaultConfig(duration=TEN_MINUTES)):
        names = await create_a_second_apart(sim, 5)
        client = sim.backend.client
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 2}
            if token:
                kwargs["NextToken"] = token
            page = await client.list_training_jobs(**kwargs)
            pages += 1
            seen.extend(row["TrainingJobName"] for row in page["TrainingJobSummaries"])
            token = page.get("NextToken")
            if not token:
                break
        assert seen == list(reversed(names))
        assert pages == 3
        since = (await sim.backend.describe_training_job(names[2])).last_modified_time
        later = await sim.backend.list_training_jobs(last_modified_time_after=since)
        assert sorted(row.name for row in later) == sorted(names[3:])


async def test_later_pages_come_from_the_first_page_s_listing() -> None:
    """A listing is one snapshot: a job created between two pages does not shift or join
    the pages still to come."""
    async for sim in started(FaultConfig(duration=TEN_MINUTES)):
        names = await create_a_second_apart(sim, 3)
        client = sim.backend.client
        first = await client.list_training_jobs(MaxResults=2)
        late = unique()
        await sim.backend.create_training_job(request(late))
        rest = await client.list_training_jobs(MaxResults=2, NextToken=first["NextToken"])
        listed = [r["TrainingJobName"] for r in first["TrainingJobSummaries"]]
        listed += [r["TrainingJobName"] for r in rest["TrainingJobSummaries"]]
        assert listed == list(reversed(names))
        assert "NextToken" not in rest


async def test_the_simulator_runs_as_a_process(tmp_path: Any) -> None:
    """`python -m stoker.simulator --port P --faults FILE` serves the API with the file's
    faults (here an instant duration)."""
    faults = tmp_path / "faults.yaml"
    faults.write_text("duration:\n  kind: instant\nseed: 3\n")
    [port] = free_ports(1)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stoker.simulator",
        "--port",
        str(port),
        "--faults",
        str(faults),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:

            async def answers() -> bool:
                try:
                    await http.get(f"{url}/_sim/stats")
                except httpx.TransportError:
                    return False
                return True

            await poll_until(answers, timeout_s=20, interval_s=0.1, what="the simulator listening")
        backend = SageMakerBackend(endpoint_url=url)
        await backend.start()
        try:
            name = unique()
            await backend.create_training_job(request(name))
            done = await backend.describe_training_job(name)
            assert done.status is TrainingJobStatus.COMPLETED
        finally:
            await backend.close()
    finally:
        process.terminate()
        await process.wait()
