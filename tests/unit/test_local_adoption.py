"""A crash of the process owning local training (and processing) jobs costs no attempt and
no compute.

The owner runs as a child process (`tests.support.local_owner`) and is killed with SIGKILL;
a new backend over the same work folder then adopts what still runs, concludes what ended
while nobody watched, and runs what never started, each under its own training job name,
each command started once.
"""

from __future__ import annotations

import json
import os
import signal
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus
from tests.support.local_owner import created_marker, rules
from tests.support.processes import kill_when
from tests.support.waiting import poll_until, wait_until

WAIT_BOUND_S = 60.0
"""Only turns a hang into a failure."""

TRAIN = """
import os, pathlib, sys, time
pathlib.Path('running').touch()  # in the job's folder, its working directory
go = pathlib.Path(os.environ['GO'])
while not go.exists():
    time.sleep(0.05)
if os.environ.get('OUTCOME') == 'fail':
    pathlib.Path(os.environ['SM_OUTPUT_DIR'], 'failure').write_text('bad data in row 7')
    sys.exit(1)
pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.txt').write_text('trained')
"""
"""A training command that runs until the test creates its GO file."""


def request(name: str, tmp_path: Path, *, outcome: str = "ok", max_runtime_s: int = 600) -> Any:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {
            "TrainingImage": "local",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python", "-c"],
            "ContainerArguments": [TRAIN],
        },
        "Environment": {"GO": str(tmp_path / "go"), "OUTCOME": outcome},
        "OutputDataConfig": {"S3OutputPath": (tmp_path / "out").as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
    }


async def owner_killed(
    tmp_path: Path, requests: list[Any], *, running: list[str], max_concurrent: int = 2
) -> Path:
    """Create `requests` in an owner process, wait until the jobs named in `running` run,
    SIGKILL the owner; returns the work folder."""
    work = tmp_path / "work"
    listed = tmp_path / "requests.json"
    listed.write_text(json.dumps(requests), encoding="utf-8")
    await kill_when(
        "tests.support.local_owner",
        [str(work), str(listed), "--max-concurrent", str(max_concurrent)],
        lambda: (
            created_marker(work).exists()
            and all((work / name / "running").exists() for name in running)
        ),
        tmp_path / "owner.log",
        what="the owner's jobs running",
    )
    return work


async def owner_killed_with_hosts_running(tmp_path: Path, body: Any, hosts: list[Path]) -> None:
    """Create the job of `body` in an owner process over tmp_path/work, wait until every
    host folder of `hosts` says its process runs, SIGKILL the owner."""
    work = tmp_path / "work"
    listed = tmp_path / "requests.json"
    listed.write_text(json.dumps([body]), encoding="utf-8")
    await kill_when(
        "tests.support.local_owner",
        [str(work), str(listed)],
        lambda: created_marker(work).exists() and all((h / "running").exists() for h in hosts),
        tmp_path / "owner.log",
        what="every host running",
    )


@pytest.fixture
async def backends() -> AsyncIterator[list[LocalProcessBackend]]:
    """Backends the test starts; closed (their processes stopped) at the end."""
    started: list[LocalProcessBackend] = []
    yield started
    for backend in started:
        await backend.close()


async def new_backend(
    work: Path, started: list[LocalProcessBackend], max_concurrent: int = 2
) -> LocalProcessBackend:
    backend = LocalProcessBackend(
        work, max_concurrent=max_concurrent, stop_grace_s=5.0, rules=rules()
    )
    await backend.start()
    started.append(backend)
    return backend


async def ended(
    backend: LocalProcessBackend, name: str, seen: list[TrainingJobDescription] | None = None
) -> TrainingJobDescription:
    seen = [] if seen is None else seen

    async def terminal() -> bool:
        seen.append(await backend.describe_training_job(name))
        return seen[-1].status.terminal

    await poll_until(terminal, WAIT_BOUND_S, interval_s=0.05, what=f"{name} ending")
    return seen[-1]


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def starts(work: Path, name: str) -> int:
    """How many times the job's command was started."""
    path = work / name / "starts.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def model_files(description: TrainingJobDescription) -> list[str]:
    assert description.model_artifacts is not None
    with tarfile.open(urlparse(description.model_artifacts).path) as archive:
        return archive.getnames()


async def test_a_process_still_running_is_adopted_and_its_model_published(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """The owner dies while the command runs; the next backend follows the same process
    (no second start) and, when it ends, packs and publishes its model: Completed."""
    work = await owner_killed(tmp_path, [request("adopt-1", tmp_path)], running=["adopt-1"])
    backend = await new_backend(work, backends)
    running = await backend.describe_training_job("adopt-1")
    assert (running.status, running.secondary_status) == (
        TrainingJobStatus.IN_PROGRESS,
        "Training",
    )
    (tmp_path / "go").touch()
    done = await ended(backend, "adopt-1")
    assert (done.status, done.failure_reason) == (TrainingJobStatus.COMPLETED, None)
    assert done.model_artifacts == (tmp_path / "out/adopt-1/output/model.tar.gz").as_uri()
    assert model_files(done) == ["model.txt"]
    assert starts(work, "adopt-1") == 1


@pytest.mark.parametrize(
    ("outcome", "status", "reason"),
    [
        ("ok", TrainingJobStatus.COMPLETED, None),
        ("fail", TrainingJobStatus.FAILED, "AlgorithmError: bad data in row 7"),
    ],
)
async def test_a_process_that_ended_while_nobody_owned_it_is_concluded(
    tmp_path: Path,
    backends: list[LocalProcessBackend],
    outcome: str,
    status: TrainingJobStatus,
    reason: str | None,
) -> None:
    """The command ends after its owner died and before any backend looks: the next one
    reports its real outcome from the exit code on disk, not a lost process."""
    work = await owner_killed(
        tmp_path, [request("orphan-1", tmp_path, outcome=outcome)], running=["orphan-1"]
    )
    (tmp_path / "go").touch()
    exit_file = work / "orphan-1" / "exit.json"
    await wait_until(exit_file.exists, WAIT_BOUND_S, interval_s=0.05, what="the command's end")
    backend = await new_backend(work, backends)
    done = await ended(backend, "orphan-1")
    assert (done.status, done.failure_reason) == (status, reason)
    if status is TrainingJobStatus.COMPLETED:
        assert model_files(done) == ["model.txt"]
    assert starts(work, "orphan-1") == 1


async def test_a_job_waiting_for_a_slot_runs_later_under_its_own_name(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """With one slot, the second job only waited when its owner died: nothing of it ran, so
    the next owner runs it, under the same training job name, once, and it never reads as
    failed (no attempt is lost). Two backends find the orphans; one takes each over."""
    requests = [request("first-1", tmp_path), request("queued-1", tmp_path)]
    work = await owner_killed(tmp_path, requests, running=["first-1"], max_concurrent=1)
    assert starts(work, "queued-1") == 0
    one = await new_backend(work, backends, max_concurrent=1)
    other = await new_backend(work, backends, max_concurrent=1)
    (tmp_path / "go").touch()
    seen: list[TrainingJobDescription] = []
    for backend in (one, other):
        for name in ("first-1", "queued-1"):
            done = await ended(backend, name, seen)
            assert (done.status, done.failure_reason) == (TrainingJobStatus.COMPLETED, None)
    assert TrainingJobStatus.FAILED not in {d.status for d in seen}
    assert (starts(work, "first-1"), starts(work, "queued-1")) == (1, 1)


async def test_an_adopted_process_is_stopped_on_request(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """A stop reaches an adopted process as it reaches one the backend started: Stopped."""
    work = await owner_killed(tmp_path, [request("stop-1", tmp_path)], running=["stop-1"])
    backend = await new_backend(work, backends)
    await backend.stop_training_job("stop-1")
    done = await ended(backend, "stop-1")
    assert (done.status, done.secondary_status) == (TrainingJobStatus.STOPPED, "Stopped")
    assert json.loads((work / "stop-1" / "exit.json").read_text())["exit_code"] == -signal.SIGTERM


async def test_an_adopted_process_is_held_to_its_max_runtime(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """MaxRuntime counts from the job's start, across the change of owner: a command that
    never ends is stopped, MaxRuntimeExceeded."""
    work = await owner_killed(
        tmp_path, [request("slow-1", tmp_path, max_runtime_s=4)], running=["slow-1"]
    )
    backend = await new_backend(work, backends)
    done = await ended(backend, "slow-1")
    assert (done.status, done.secondary_status) == (
        TrainingJobStatus.STOPPED,
        "MaxRuntimeExceeded",
    )
    assert starts(work, "slow-1") == 1


async def test_a_process_lost_with_its_owner_still_fails_as_before(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """When the supervisor is gone too and left no exit code (killed with its owner), the
    job is lost: Failed with InternalServerError, which the failure rules retry."""
    work = await owner_killed(tmp_path, [request("lost-1", tmp_path)], running=["lost-1"])
    supervisor = json.loads((work / "lost-1" / "starts.jsonl").read_text())["pid"]
    os.killpg(supervisor, signal.SIGKILL)  # its whole group: the supervisor and the command
    await wait_until(
        lambda: not running(supervisor), WAIT_BOUND_S, interval_s=0.05, what="the kill"
    )
    backend = await new_backend(work, backends)
    done = await ended(backend, "lost-1")
    assert done.status is TrainingJobStatus.FAILED
    assert (done.failure_reason or "").startswith("InternalServerError: ")


TRAIN_ON_HOSTS = """
import os, pathlib, sys, time
host = os.environ['SM_CURRENT_HOST']
pathlib.Path('running').touch()  # in the host's folder, its working directory
go = pathlib.Path(os.environ['GO'])
while not go.exists():
    time.sleep(0.05)
pathlib.Path(os.environ['SM_CHECKPOINT_DIR'], 'step-' + host).write_text('saved')
if host == os.environ.get('FAIL_HOST'):
    pathlib.Path(os.environ['SM_OUTPUT_DIR'], 'failure').write_text('bad shard')
    sys.exit(1)
pathlib.Path(os.environ['SM_MODEL_DIR'], 'model-' + host + '.txt').write_text('trained')
"""
"""TRAIN for a job of several hosts: each writes a checkpoint and a model of its own."""


@pytest.mark.parametrize(
    ("fail_host", "status", "reason"),
    [
        ("", TrainingJobStatus.COMPLETED, None),
        ("algo-2", TrainingJobStatus.FAILED, "AlgorithmError: algo-2: bad shard"),
    ],
)
async def test_every_host_of_a_job_is_adopted(
    tmp_path: Path,
    backends: list[LocalProcessBackend],
    fail_host: str,
    status: TrainingJobStatus,
    reason: str | None,
) -> None:
    """The owner of a two-host job dies while both hosts run: the next backend follows
    both processes (each started once), saves both hosts' checkpoints to the job's
    CheckpointConfig, and concludes from both exit codes: the model of both hosts, or the
    failing host's reason."""
    body = request("hosts-1", tmp_path)
    body["ResourceConfig"]["InstanceCount"] = 2
    body["AlgorithmSpecification"]["ContainerArguments"] = [TRAIN_ON_HOSTS]
    body["Environment"]["FAIL_HOST"] = fail_host
    body["CheckpointConfig"] = {"S3Uri": (tmp_path / "checkpoints").as_uri()}
    work = tmp_path / "work"
    hosts = [work / "hosts-1" / "hosts" / host for host in ("algo-1", "algo-2")]
    await owner_killed_with_hosts_running(tmp_path, body, hosts)
    backend = await new_backend(work, backends)
    (tmp_path / "go").touch()
    done = await ended(backend, "hosts-1")
    assert (done.status, done.failure_reason) == (status, reason)
    if status is TrainingJobStatus.COMPLETED:
        assert model_files(done) == ["model-algo-1.txt", "model-algo-2.txt"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-algo-1",
        "step-algo-2",
    ]
    assert [len((h / "starts.jsonl").read_text().splitlines()) for h in hosts] == [1, 1]


PROCESS_ON_HOSTS = """
import json, os, pathlib, time
root = pathlib.Path(os.environ['HOME'])
host = json.loads((root / 'opt/ml/config/resourceconfig.json').read_text())['current_host']
pathlib.Path('running').touch()  # in the host's folder, its working directory
go = pathlib.Path(os.environ['GO'])
while not go.exists():
    time.sleep(0.05)
(root / 'opt/ml/processing/output/parts' / (host + '.csv')).write_text('part of ' + host)
"""
"""A processing command for a job of several hosts: each writes an output part of its own
once the test creates the GO file."""


async def test_every_host_of_a_processing_job_is_adopted(
    tmp_path: Path, backends: list[LocalProcessBackend]
) -> None:
    """The owner of a two-host processing job dies while both hosts run: the next backend
    follows both processes (each started once) and uploads both hosts' outputs."""
    out = tmp_path / "parts"
    body = {
        "ProcessingJobName": "split-1",
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-processing",
        "AppSpecification": {
            "ImageUri": "local",
            "ContainerEntrypoint": ["python", "-c"],
            "ContainerArguments": [PROCESS_ON_HOSTS],
        },
        "Environment": {"GO": str(tmp_path / "go")},
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "parts",
                    "S3Output": {
                        "S3Uri": str(out),
                        "LocalPath": "/opt/ml/processing/output/parts",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    work = tmp_path / "work"
    hosts = [work / "_processing" / "split-1" / "hosts" / host for host in ("algo-1", "algo-2")]
    await owner_killed_with_hosts_running(tmp_path, body, hosts)
    backend = await new_backend(work, backends)
    (tmp_path / "go").touch()
    seen: list[TrainingJobDescription] = []

    async def terminal() -> bool:
        seen.append(await backend.describe_processing_job("split-1"))
        return seen[-1].status.terminal

    await poll_until(terminal, WAIT_BOUND_S, interval_s=0.05, what="split-1 ending")
    assert seen[-1].status is TrainingJobStatus.COMPLETED, seen[-1].failure_reason
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "algo-1.csv": "part of algo-1",
        "algo-2.csv": "part of algo-2",
    }
    assert [len((h / "starts.jsonl").read_text().splitlines()) for h in hosts] == [1, 1]
