"""One contract for every training backend: local processes, and the SageMaker adapter
talking to the SageMaker-API simulator through the real aiobotocore client."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stoker.adapters.training.local import LocalProcessBackend
from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.policy import LocalRunRules
from stoker.ports.training import (
    InvalidRequest,
    TrainingBackend,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
)
from stoker.simulator import DurationSpec, FaultConfig, SimulatorServer
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until

DEADLINE_S = 20.0
BUCKET = "stoker-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto server speaking the S3 API on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="stoker-local",
        aws_secret_access_key="stoker-local",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: the simulator does not check signatures, botocore needs some."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stoker-local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stoker-local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(params=["local", "simulator"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, aws_credentials: None, s3_endpoint: str
) -> AsyncIterator[TrainingBackend]:
    """Each backend in turn, started and closed. Local jobs write their models to S3 (moto)."""
    if request.param == "local":
        local = LocalProcessBackend(
            tmp_path / "work", max_concurrent=4, stop_grace_s=5.0, s3_endpoint=s3_endpoint
        )
        await local.start()
        yield local
        await local.close()
        return
    faults = FaultConfig(
        startup_s=0.1, duration=DurationSpec(kind="fixed", seconds=1.5), stop_s=0.1, seed=7
    )
    async with SimulatorServer(faults) as server:
        remote = SageMakerBackend(endpoint_url=server.url)
        await remote.start()
        yield remote
        await remote.close()


def unique(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def training_request(name: str, **hyperparameters: str) -> dict[str, Any]:
    """A CreateTrainingJob request the local backend runs and SageMaker accepts."""
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/stoker:latest",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python", "-m", "stoker.training_scripts.train_linear"],
        },
        "HyperParameters": {"epochs": "5", **hyperparameters},
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 1,
            "VolumeSizeInGB": 10,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def local_request(name: str, tmp_path: Path, **hyperparameters: str) -> dict[str, Any]:
    request = training_request(name, **hyperparameters)
    request["OutputDataConfig"] = {"S3OutputPath": (tmp_path / "out").as_uri()}
    return request


async def wait_for(
    backend: TrainingBackend,
    name: str,
    done: Callable[[TrainingJobDescription], bool],
    deadline_s: float = DEADLINE_S,
) -> TrainingJobDescription:
    """Describe the job until `done` holds; fail after the deadline."""
    seen: list[TrainingJobDescription] = []

    async def reached() -> bool:
        seen.append(await backend.describe_training_job(name))
        return done(seen[-1])

    try:
        await poll_until(reached, deadline_s, interval_s=0.05)
    except TimeoutError:
        pytest.fail(f"{name} still {seen[-1].status} after {deadline_s} s")
    return seen[-1]


def terminal(description: TrainingJobDescription) -> bool:
    return description.status.terminal


async def test_a_job_runs_to_completion_with_timings(backend: TrainingBackend) -> None:
    """A created job is InProgress, then Completed with start/end times, billable seconds and
    a model artifact location."""
    name = unique()
    arn = await backend.create_training_job(training_request(name))
    assert arn.endswith(f"training-job/{name}")
    first = await backend.describe_training_job(name)
    assert first.status in {TrainingJobStatus.IN_PROGRESS, TrainingJobStatus.COMPLETED}
    done = await wait_for(backend, name, terminal)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert done.failure_reason is None
    assert done.training_start_time is not None
    assert done.training_end_time is not None
    assert done.training_start_time <= done.training_end_time
    assert done.creation_time <= done.last_modified_time
    assert done.billable_seconds is not None
    assert done.billable_seconds >= 0
    assert done.model_artifacts is not None
    assert done.model_artifacts.endswith("model.tar.gz")
    assert done.instance_type == "ml.m5.large"


async def test_a_sharded_job_of_two_instances_runs_on_every_backend(
    backend: TrainingBackend, s3_endpoint: str
) -> None:
    """The same request, InstanceCount 2 with a ShardedByS3Key channel and a
    CheckpointConfig, is accepted by every backend (SageMaker's wire model included) and
    completes: the local backend runs two hosts, each on its share of the CSVs."""
    name = unique("shard")
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id="stoker-local",
        aws_secret_access_key="stoker-local",
    )
    for part in range(3):
        rows = "".join(f"{x},{x + 1},{int(x > 2)}\n" for x in range(part, part + 5))
        client.put_object(Bucket=BUCKET, Key=f"{name}/train/part-{part}.csv", Body=rows.encode())
    request = training_request(name)
    request["ResourceConfig"]["InstanceCount"] = 2
    request["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/{name}/train/",
                    "S3DataDistributionType": "ShardedByS3Key",
                }
            },
        }
    ]
    request["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/{name}/checkpoints/"}
    await backend.create_training_job(request)
    done = await wait_for(backend, name, terminal)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert done.model_artifacts is not None


async def test_the_same_name_twice_is_already_exists(backend: TrainingBackend) -> None:
    """A second CreateTrainingJob with a used name raises TrainingJobAlreadyExists, which a
    launcher treats as 'launched'; no second job starts."""
    name = unique()
    await backend.create_training_job(training_request(name))
    with pytest.raises(TrainingJobAlreadyExists) as caught:
        await backend.create_training_job(training_request(name))
    assert caught.value.name == name
    assert not caught.value.retriable
    listed = await backend.list_training_jobs(name_contains=name)
    assert [row.name for row in listed] == [name]


async def test_a_failure_reason_surfaces(backend: TrainingBackend) -> None:
    """A training script that writes the failure file ends Failed with
    'AlgorithmError: <its text>' as FailureReason."""
    name = unique()
    await backend.create_training_job(training_request(name, fail_with="CUDA out of memory"))
    done = await wait_for(backend, name, terminal)
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == "AlgorithmError: CUDA out of memory"


async def test_a_running_job_can_be_stopped(backend: TrainingBackend) -> None:
    """StopTrainingJob on a running job ends it Stopped; stopping it again does nothing."""
    name = unique()
    await backend.create_training_job(training_request(name, epochs="1000000000"))
    await wait_for(backend, name, lambda d: d.secondary_status == "Training" or terminal(d))
    await backend.stop_training_job(name)
    done = await wait_for(backend, name, terminal)
    assert done.status is TrainingJobStatus.STOPPED
    await backend.stop_training_job(name)
    assert (await backend.describe_training_job(name)).status is TrainingJobStatus.STOPPED


async def test_listing_filters_by_status_name_and_modified_time(backend: TrainingBackend) -> None:
    """ListTrainingJobs filters by status, name and last-modified time (exclusive)."""
    prefix = unique("lst")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        await backend.create_training_job(training_request(name))
    finished = [await wait_for(backend, name, terminal) for name in names]
    latest = max(d.last_modified_time for d in finished)

    completed = await backend.list_training_jobs(
        status_equals=TrainingJobStatus.COMPLETED, name_contains=prefix
    )
    assert sorted(row.name for row in completed) == names
    assert all(row.status is TrainingJobStatus.COMPLETED for row in completed)
    running = await backend.list_training_jobs(
        status_equals=TrainingJobStatus.IN_PROGRESS, name_contains=prefix
    )
    assert running == []
    assert (
        await backend.list_training_jobs(last_modified_time_after=latest, name_contains=prefix)
        == []
    )
    earliest = min(d.last_modified_time for d in finished)
    changed = await backend.list_training_jobs(
        last_modified_time_after=earliest, name_contains=prefix
    )
    assert {row.name for row in changed} == {
        d.name for d in finished if d.last_modified_time > earliest
    }
    capped = await backend.list_training_jobs(name_contains=prefix, max_results=2)
    assert len(capped) == 2


async def test_unknown_jobs_are_not_found(backend: TrainingBackend) -> None:
    """Describe and stop of a name never used raise TrainingJobNotFound."""
    with pytest.raises(TrainingJobNotFound):
        await backend.describe_training_job(unique("ghost"))
    with pytest.raises(TrainingJobNotFound):
        await backend.stop_training_job(unique("ghost"))


async def test_an_invalid_name_is_a_terminal_invalid_request(backend: TrainingBackend) -> None:
    """A name SageMaker would reject is an InvalidRequest, not retriable."""
    with pytest.raises(InvalidRequest) as caught:
        await backend.create_training_job(training_request("bad_name!"))
    assert not caught.value.retriable


async def test_calls_are_counted_per_operation(backend: TrainingBackend) -> None:
    """Each backend counts its API calls per operation name (the benchmark reads these)."""
    name = unique()
    await backend.create_training_job(training_request(name))
    await backend.describe_training_job(name)
    await backend.list_training_jobs(name_contains=name)
    assert backend.calls["CreateTrainingJob"] == 1
    assert backend.calls["DescribeTrainingJob"] == 1
    assert backend.calls["ListTrainingJobs"] == 1


# --- what only the local backend does ------------------------------------------------------


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    """A local backend that also runs `python -c` (these tests' own small programs)."""
    rules = LocalRunRules(entrypoints=[*shipped_entrypoints(), ["python", "-c"]])
    backend = LocalProcessBackend(
        tmp_path / "work", max_concurrent=2, stop_grace_s=5.0, rules=rules
    )
    await backend.start()
    yield backend
    await backend.close()


async def test_local_jobs_get_the_sagemaker_layout(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """The script sees SM_* variables pointing into the /opt/ml tree: its channel data,
    hyperparameters.json, and its model lands packed at the output path."""
    data = tmp_path / "data"
    data.mkdir()
    rows = ["x1,x2,label"] + [f"{i / 10},{-i / 10},{int(i > 0)}" for i in range(-5, 6)]
    (data / "train.csv").write_text("\n".join(rows))
    name = unique()
    request = local_request(name, tmp_path)
    request["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": data.as_uri()}},
        }
    ]
    await local.create_training_job(request)
    done = await wait_for(local, name, terminal)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    ml = local.work_dir / name / "opt" / "ml"
    assert json.loads((ml / "input/config/hyperparameters.json").read_text()) == {"epochs": "5"}
    assert (ml / "input/data/train/train.csv").is_file()
    model = json.loads((ml / "model/model.json").read_text())
    assert model["rows"] == 11
    assert model["epochs"] == 5
    assert done.model_artifacts == (tmp_path / "out" / name / "output/model.tar.gz").as_uri()
    assert "trained 5 epochs on 11 rows" in (local.work_dir / name / "logs.txt").read_text()


async def test_a_checkpoint_folder_carries_over_to_the_next_attempt(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """With CheckpointConfig pointing at a local folder, a second attempt resumes where the
    first stopped instead of starting over."""
    checkpoints = tmp_path / "checkpoints"
    for attempt, epochs in ((1, "4"), (2, "7")):
        name = unique(f"ckpt-a{attempt}")
        request = local_request(name, tmp_path, epochs=epochs)
        request["CheckpointConfig"] = {"S3Uri": checkpoints.as_uri()}
        await local.create_training_job(request)
        done = await wait_for(local, name, terminal)
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert json.loads((checkpoints / "checkpoint.json").read_text())["epoch"] == 7
    assert "resuming from epoch 4" in (local.work_dir / name / "logs.txt").read_text()


async def test_a_nonzero_exit_without_failure_file_reports_the_exit_code(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A process that exits 3 and writes no failure file fails with 'exit code 3'."""
    name = unique()
    request = local_request(name, tmp_path)
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = ["python", "-c"]
    request["AlgorithmSpecification"]["ContainerArguments"] = ["import sys; sys.exit(3)"]
    await local.create_training_job(request)
    done = await wait_for(local, name, terminal)
    assert done.failure_reason == "AlgorithmError: exit code 3"


async def test_a_missing_input_channel_is_a_client_error(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """An input path that does not exist fails the job with a ClientError reason."""
    name = unique()
    request = local_request(name, tmp_path)
    request["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3Uri": str(tmp_path / "absent")}},
        }
    ]
    await local.create_training_job(request)
    done = await wait_for(local, name, terminal)
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert done.failure_reason.startswith("ClientError:")


async def test_a_restarted_backend_still_describes_finished_jobs(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A new backend over the same work folder describes and lists earlier jobs from their
    state files, and still refuses their names."""
    name = unique()
    await local.create_training_job(local_request(name, tmp_path))
    done = await wait_for(local, name, terminal)
    again = LocalProcessBackend(local.work_dir)
    await again.start()
    try:
        assert await again.describe_training_job(name) == done
        assert [row.name for row in await again.list_training_jobs(name_contains=name)] == [name]
        with pytest.raises(TrainingJobAlreadyExists):
            await again.create_training_job(local_request(name, tmp_path))
    finally:
        await again.close()


async def test_a_listing_follows_finished_jobs_removed_or_made_again_on_disk(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """Another backend over the same work folder lists a finished job on every listing, the
    new job once its folder is removed and one of the same name made again, and nothing once
    that folder is removed too."""
    name = unique()
    await local.create_training_job(local_request(name, tmp_path))
    await wait_for(local, name, terminal)
    other = LocalProcessBackend(local.work_dir)
    await other.start()
    try:
        for _ in range(2):
            listed = await other.list_training_jobs(name_contains=name)
            assert [(row.name, row.status) for row in listed] == [
                (name, TrainingJobStatus.COMPLETED)
            ]
        shutil.rmtree(local.work_dir / name)
        again = LocalProcessBackend(local.work_dir)
        await again.start()
        try:
            await again.create_training_job(local_request(name, tmp_path, fail_with="bad data"))
            await wait_for(again, name, terminal)
        finally:
            await again.close()
        listed = await other.list_training_jobs(name_contains=name)
        assert [(row.name, row.status) for row in listed] == [(name, TrainingJobStatus.FAILED)]
        shutil.rmtree(local.work_dir / name)
        assert await other.list_training_jobs(name_contains=name) == []
    finally:
        await other.close()


async def test_jobs_over_the_cap_wait_and_can_be_stopped_while_waiting(
    tmp_path: Path,
) -> None:
    """With one slot, a second job waits (InProgress, Starting) and a stop ends it at once."""
    backend = LocalProcessBackend(tmp_path / "work", max_concurrent=1, stop_grace_s=5.0)
    await backend.start()
    try:
        running, waiting = unique("run"), unique("wait")
        await backend.create_training_job(local_request(running, tmp_path, epochs="1000000000"))
        await wait_for(backend, running, lambda d: d.secondary_status == "Training")
        await backend.create_training_job(local_request(waiting, tmp_path))
        queued = await backend.describe_training_job(waiting)
        assert (queued.status, queued.secondary_status) == (
            TrainingJobStatus.IN_PROGRESS,
            "Starting",
        )
        await backend.stop_training_job(waiting)
        assert (await backend.describe_training_job(waiting)).status is TrainingJobStatus.STOPPED
        await backend.stop_training_job(running)
        assert (await wait_for(backend, running, terminal)).status is TrainingJobStatus.STOPPED
    finally:
        await backend.close()
