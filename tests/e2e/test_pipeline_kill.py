"""`stoker up` on the embedded default SIGKILLed while a pipeline execution has steps done,
steps training and steps waiting, then started again: the execution succeeds, every step ran
once, on its first attempt, and no training command ran twice."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.app.pipelines import LifecycleStepJobs
from stoker.core.clock import SystemClock
from stoker.core.job import JobStatus
from stoker.core.naming import training_job_name
from stoker.core.pipelines.state import ExecutionStatus, StepStatus
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.pipelines.engine import PipelineEngine
from tests.e2e.embedded import EmbeddedStack
from tests.e2e.test_embedded_kill import TRAIN, starts
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.slow]

TIMEOUT_S = 300.0
FAN = 6


def step(name: str, output: Path, depends_on: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": name,
        "Type": "Training",
        "Arguments": {
            "RoleArn": "arn:aws:iam::000000000000:role/stoker-e2e",
            "AlgorithmSpecification": {
                "TrainingImage": "local",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ["python", "-c"],
                "ContainerArguments": [TRAIN],
            },
            "OutputDataConfig": {"S3OutputPath": output.as_uri()},
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        },
    }
    if depends_on:
        body["DependsOn"] = depends_on
    return body


def definition(output: Path) -> dict[str, Any]:
    """Root -> Fan0..Fan5 -> Join -> Last."""
    fans = [f"Fan{n}" for n in range(FAN)]
    steps = [step("Root", output, [])]
    steps += [step(name, output, ["Root"]) for name in fans]
    steps += [step("Join", output, fans), step("Last", output, ["Join"])]
    return {"Version": "2020-12-01", "Parameters": [], "Steps": steps}


STEPS = ["Root", *[f"Fan{n}" for n in range(FAN)], "Join", "Last"]


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("pipeline-kill")) as embedded:
        yield embedded


async def test_a_killed_stack_runs_every_step_once_and_finishes_the_execution(
    stack: EmbeddedStack,
) -> None:
    execution_id = f"kill{uuid.uuid4().hex[:6]}"
    job_ids = [f"{execution_id}.{name}.1" for name in STEPS]
    await stack.start()
    bus = SqliteLogBus(stack.data / "bus.sqlite3")
    jobs = SqliteJobStore(stack.data / "jobs.sqlite3")
    pipelines = SqlitePipelineStore(stack.data / "pipelines.sqlite3")
    for part in (bus, jobs, pipelines):
        await part.start()
    try:
        clock = SystemClock()
        engine = PipelineEngine(
            pipelines, LifecycleStepJobs(JobService(Transitioner(jobs, bus), clock)), bus, clock
        )
        doc = orjson.dumps(definition(stack.folder / "out")).decode()
        await pipelines.put_pipeline(
            "fan", team="default", definition=doc, description=None, now=clock.now()
        )
        await engine.start_execution(
            "fan", {}, team="default", owner="kill", execution_id=execution_id
        )
        folders = {
            job_id: stack.data / "training" / training_job_name(job_id, 1).lower()
            for job_id in job_ids
        }

        async def mid_run() -> bool:
            stack.check_alive()
            state = (await pipelines.get_execution(execution_id)).state
            done = sum(run.status is StepStatus.SUCCEEDED for run in state.steps.values())
            running = any(run.status is StepStatus.EXECUTING for run in state.steps.values())
            return done >= 2 and running

        await poll_until(mid_run, TIMEOUT_S, interval_s=0.05, what="steps done and steps running")
        assert stack.kill() == -signal.SIGKILL
        await stack.start()

        async def ended() -> bool:
            stack.check_alive()
            return (await pipelines.get_execution(execution_id)).status.terminal

        await poll_until(ended, TIMEOUT_S, interval_s=0.2, what="the execution's end")
        final = await pipelines.get_execution(execution_id)
        step_jobs = [await jobs.get(job_id) for job_id in job_ids]
        all_jobs = [job.job_id for job in (await jobs.list_jobs(limit=1000)).items]
    finally:
        for part in (pipelines, jobs, bus):
            await part.close()
    assert final.status is ExecutionStatus.SUCCEEDED, final.state.failure_reason
    assert {name: run.attempt for name, run in final.state.steps.items()} == dict.fromkeys(STEPS, 1)
    assert sorted(all_jobs) == sorted(job_ids)  # one job per step, no second attempt
    assert {job.job_id: job.status for job in step_jobs} == dict.fromkeys(
        job_ids, JobStatus.COMPLETED
    )
    assert {job.job_id: job.attempt for job in step_jobs} == dict.fromkeys(job_ids, 1)
    assert {job_id: starts(folder) for job_id, folder in folders.items()} == dict.fromkeys(
        job_ids, 1
    )
