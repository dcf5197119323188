"""Pipelines on Kafka and DynamoDB Local (the DynamoDB store): one process per service, the
`pipelines` service among them, training steps as jobs on the SageMaker-API simulator.

A pipeline put and started over HTTP runs to its end under `stoker up` (every service in one
process); and, with one process per service, a `pipelines` process SIGKILLed while steps
train and others wait, then started again, finishes the execution with every step run once,
on its first attempt.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.dynamodb_pipelines import DynamoDbPipelineStore
from stoker.core.job import JobStatus
from stoker.core.naming import training_job_name
from stoker.core.pipelines.state import ExecutionStatus, StepStatus
from tests.e2e.stack import Stack, StackConfig
from tests.e2e.workload import make_tokens
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 300.0
INSTANCE = "ml.m5.large"
SERVICES = ("api", "intake", "launcher", "monitor", "retrier", "relay", "pipelines")
FAULTS: dict[str, Any] = {
    "seed": 11,
    # 600 simulated seconds a wall second: a step's job trains for 1-2 s.
    "speedup": 600,
    "startup_s": 30,
    "duration": {"kind": "uniform", "low_s": 600, "high_s": 1200},
    "capacity_error_rate": 0.0,
    "algorithm_error_rate": 0.0,
    "instance_quota": {INSTANCE: 32},
}
FAN = 4
STEPS = ["Root", *[f"Fan{n}" for n in range(FAN)], "Join"]


def step(name: str, depends_on: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": name,
        "Type": "Training",
        "Arguments": {
            "RoleArn": "arn:aws:iam::123456789012:role/stoker-e2e",
            "AlgorithmSpecification": {"TrainingImage": "e2e:1", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://stoker-e2e/pipelines"},
            "ResourceConfig": {"InstanceType": INSTANCE, "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    }
    if depends_on:
        body["DependsOn"] = depends_on
    return body


def definition() -> dict[str, Any]:
    """Root -> Fan0..Fan3 -> Join."""
    fans = [f"Fan{n}" for n in range(FAN)]
    steps = [step("Root", []), *(step(name, ["Root"]) for name in fans), step("Join", fans)]
    return {"Version": "2020-12-01", "Parameters": [], "Steps": steps}


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("e2e-pipeline-dynamodb")
    config = StackConfig(faults=FAULTS, settings={"STOKER_STORE": "dynamodb"})
    with Stack(folder, kafka_bootstrap, dynamodb_endpoint, config) as started:
        started.start_all(SERVICES)
        yield started


@pytest.fixture
def up(
    kafka_bootstrap: str, dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("e2e-pipeline-dynamodb-up")
    config = StackConfig(faults=FAULTS, settings={"STOKER_STORE": "dynamodb"})
    with Stack(folder, kafka_bootstrap, dynamodb_endpoint, config) as started:
        started.start_up()
        yield started


@asynccontextmanager
async def stores(stack: Stack) -> AsyncIterator[tuple[DynamoDbJobStore, DynamoDbPipelineStore]]:
    """The test's own view of the run's tables."""
    settings = stack.settings()
    jobs, pipelines = DynamoDbJobStore(settings), DynamoDbPipelineStore(settings)
    await jobs.start()
    await pipelines.start()
    try:
        yield jobs, pipelines
    finally:
        await pipelines.close()
        await jobs.close()


async def start_execution(stack: Stack, token: str, name: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        put = await http.put(f"/v1/pipelines/{name}", json={"definition": definition()})
        assert put.status_code == 201, put.text
        started = await http.post(f"/v1/pipelines/{name}/executions", json={})
        assert started.status_code == 201, started.text
        execution_id: str = started.json()["execution_id"]
        return execution_id


async def execution_view(stack: Stack, token: str, execution_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        response = await http.get(f"/v1/executions/{execution_id}")
        response.raise_for_status()
        view: dict[str, Any] = response.json()
        return view


def check_every_step_ran_once(stack: Stack, job_ids: list[str]) -> None:
    created = stack.sim_stats()["created"]
    names = {training_job_name(job_id, 1) for job_id in job_ids}
    assert {name: created.get(name, 0) for name in names} == dict.fromkeys(names, 1)


async def test_a_pipeline_runs_to_its_end_under_stoker_up_on_kafka_and_dynamodb(
    up: Stack,
) -> None:
    stack = up
    name = f"fan-{uuid.uuid4().hex[:6]}"
    async with stores(stack) as (jobs, _):
        token = (await make_tokens(jobs)).admin
        execution_id = await start_execution(stack, token, name)

        async def ended() -> bool:
            stack.check_alive()
            view = await execution_view(stack, token, execution_id)
            return ExecutionStatus(view["status"]).terminal

        await poll_until(ended, TIMEOUT_S, interval_s=0.3, what="the execution's end")
        view = await execution_view(stack, token, execution_id)
        job_ids = [f"{execution_id}.{step}.1" for step in STEPS]
        finished = [await jobs.get(job_id) for job_id in job_ids]
    assert view["status"] == ExecutionStatus.SUCCEEDED, view["failure_reason"]
    assert {s["name"]: (s["status"], s["attempt"]) for s in view["steps"]} == dict.fromkeys(
        STEPS, (StepStatus.SUCCEEDED, 1)
    )
    assert {job.job_id: job.status for job in finished} == dict.fromkeys(
        job_ids, JobStatus.COMPLETED
    )
    check_every_step_ran_once(stack, job_ids)
    assert stack.grep("up", "dynamodb pipeline store ready")


async def test_a_killed_pipelines_service_resumes_the_execution(stack: Stack) -> None:
    name = f"kill-{uuid.uuid4().hex[:6]}"
    async with stores(stack) as (jobs, pipelines):
        token = (await make_tokens(jobs)).admin
        execution_id = await start_execution(stack, token, name)

        async def mid_run() -> bool:
            stack.check_alive()
            state = (await pipelines.get_execution(execution_id)).state
            runs = state.steps.values()
            done = sum(run.status is StepStatus.SUCCEEDED for run in runs)
            running = any(run.status is StepStatus.EXECUTING for run in runs)
            return done >= 1 and running

        await poll_until(mid_run, TIMEOUT_S, interval_s=0.05, what="a step done, steps running")
        assert stack.kill("pipelines") == -signal.SIGKILL
        stack.restart("pipelines")

        async def ended() -> bool:
            stack.check_alive()
            return (await pipelines.get_execution(execution_id)).status.terminal

        await poll_until(ended, TIMEOUT_S, interval_s=0.2, what="the execution's end")
        final = await pipelines.get_execution(execution_id)
        job_ids = [f"{execution_id}.{step}.1" for step in STEPS]
        finished = [await jobs.get(job_id) for job_id in job_ids]
    assert final.status is ExecutionStatus.SUCCEEDED, final.state.failure_reason
    assert {n: run.attempt for n, run in final.state.steps.items()} == dict.fromkeys(STEPS, 1)
    assert {job.job_id: (job.status, job.attempt) for job in finished} == dict.fromkeys(
        job_ids, (JobStatus.COMPLETED, 1)
    )
    check_every_step_ran_once(stack, job_ids)
