"""`stoker up` on the embedded default (SQLite log, SQLite store, local training processes)
SIGKILLed while jobs train and others wait for a slot, then started again: every job
completes on its first attempt, no attempt is lost and no training command runs twice."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.job import JobStatus
from stoker.core.spec import JobSpec
from tests.e2e.embedded import EmbeddedStack
from tests.e2e.workload import count_terminal, submit_events, wait_terminal
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.slow]

JOBS = 16
TIMEOUT_S = 300.0
TRAIN = (
    "import os, pathlib, time; time.sleep(1.5); "
    "pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.txt').write_text('trained')"
)
"""A training command that takes a while without using the CPU the stack needs."""


def job_spec(job_id: str, output: Path) -> JobSpec:
    return JobSpec.model_validate(
        {
            "job_id": job_id,
            "owner": "embedded-kill",
            "training": {
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
    )


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("embedded-kill")) as embedded:
        yield embedded


def starts(folder: Path) -> int:
    path = folder / "starts.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def training_now(folder: Path) -> bool:
    return starts(folder) > 0 and not (folder / "exit.json").exists()


def waiting_for_a_slot(folder: Path) -> bool:
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return state["secondary"] == "Starting" and starts(folder) == 0


async def test_a_killed_stack_loses_no_attempt_and_runs_no_command_twice(
    stack: EmbeddedStack,
) -> None:
    """16 jobs, two local slots. `stoker up` is SIGKILLed once some jobs ended while one
    trains and one waits for a slot; the restarted stack adopts the running process, runs
    the waiting jobs under their own names, and every job completes on attempt 1, each
    training command started exactly once."""
    run = uuid.uuid4().hex[:6]
    ids = [f"emb-{run}-{n:02d}" for n in range(JOBS)]
    await stack.start()
    bus = SqliteLogBus(stack.data / "bus.sqlite3")
    store = SqliteJobStore(stack.data / "jobs.sqlite3")
    await bus.start()
    await store.start()
    try:
        await submit_events(bus, [job_spec(job_id, stack.folder / "out") for job_id in ids])
        folders = [stack.training(job_id) for job_id in ids]

        async def mid_run() -> bool:
            stack.check_alive()
            # The training folders are written by the stack: polled, with a deadline.
            return (
                await count_terminal(store, ids) >= 2
                and any(training_now(f) for f in folders)
                and any(waiting_for_a_slot(f) for f in folders)
            )

        await poll_until(mid_run, TIMEOUT_S, interval_s=0.05, what="jobs training and waiting")
        assert stack.kill() == -signal.SIGKILL
        await stack.start()
        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive, stall_s=120)
        jobs = [await store.get(job_id) for job_id in ids]
    finally:
        await store.close()
        await bus.close()
    log = stack.log.read_text(errors="replace")
    assert "local training job adopted" in log
    assert "local training job queued again" in log
    assert {job.job_id: job.status for job in jobs} == dict.fromkeys(ids, JobStatus.COMPLETED)
    assert {job.job_id: job.attempt for job in jobs} == dict.fromkeys(ids, 1)
    assert {job_id: starts(stack.training(job_id)) for job_id in ids} == dict.fromkeys(ids, 1)
    assert "was lost" not in log
