"""Processing jobs on the training backend port.

The local backend runs each one as a process in SageMaker Processing's layout: inputs
copied from S3 (a moto server) or local folders to their `/opt/ml/processing/...` paths,
outputs uploaded when it ends. The SageMaker adapter speaks the real wire protocol to
moto's SageMaker, which records processing jobs without running them, and to the
SageMaker-API simulator, which runs them as timelines.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stoker import training_scripts
from stoker.adapters.training.local import LocalProcessBackend
from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.core.job_kind import JobKind
from stoker.core.policy import LocalRunRules
from stoker.core.sharding import keys_for_host
from stoker.ports.training import (
    InvalidRequest,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
)
from stoker.simulator import DurationSpec, FaultConfig, SimulatorServer
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until

BUCKET = "stoker-processing"
# By file: a child process imports the installed stoker package, which may be another
# checkout's; the script imports nothing of stoker.
SPLIT = ["python", str(Path(training_scripts.__file__).parent / "split_by_key.py")]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server (S3 and SageMaker APIs) on a free loopback port, with one bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="stokerlocal",
        aws_secret_access_key="stokerlocal",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stokerlocal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stokerlocal")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Keys given here, not read from the environment: boto3's default session would keep
    # them for every later client of the test run.
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        aws_access_key_id="stokerlocal",
        aws_secret_access_key="stokerlocal",
    )


@pytest.fixture
async def local(tmp_path: Path, moto_endpoint: str, s3: Any) -> AsyncIterator[LocalProcessBackend]:
    # The shipped scripts, and `python -c` for a job that runs until it is stopped.
    rules = LocalRunRules(entrypoints=[*shipped_entrypoints(), ["python", "-c"]])
    backend = LocalProcessBackend(
        tmp_path / "work", stop_grace_s=5.0, s3_endpoint=moto_endpoint, rules=rules
    )
    await backend.start()
    yield backend
    await backend.close()


def unique(prefix: str = "proc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def processing_request(
    name: str, inputs: list[tuple[str, str]], output_uri: str, *arguments: str
) -> dict[str, Any]:
    """A CreateProcessingJob request running the shipped split script."""
    return {
        "ProcessingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-processing",
        "AppSpecification": {
            "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/stoker:latest",
            "ContainerEntrypoint": SPLIT,
            "ContainerArguments": list(arguments)
            or [
                "--input",
                "/opt/ml/processing/input",
                "--output",
                "/opt/ml/processing/output/split",
                "--key",
                "customer_id",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": input_name,
                "S3Input": {
                    "S3Uri": uri,
                    "LocalPath": f"/opt/ml/processing/input/{input_name}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
            for input_name, uri in inputs
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "split",
                    "S3Output": {
                        "S3Uri": output_uri,
                        "LocalPath": "/opt/ml/processing/output/split",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 10,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


async def finished(backend: LocalProcessBackend, name: str) -> TrainingJobDescription:
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await backend.describe_processing_job(name))
        return seen[-1].status.terminal

    await poll_until(ended, 30.0, interval_s=0.05)
    return seen[-1]


async def test_a_processing_job_reads_s3_and_local_inputs_and_uploads_its_outputs(
    local: LocalProcessBackend, s3: Any, tmp_path: Path
) -> None:
    """Inputs from an S3 prefix and a local folder land at their LocalPath, the script's
    /opt/ml arguments point there, and the output folder is uploaded to S3 at the end."""
    write_csv(
        tmp_path / "local-in" / "a.csv",
        [{"customer_id": "1", "kwh": "10"}, {"customer_id": "2", "kwh": "20"}],
    )
    s3.put_object(Bucket=BUCKET, Key="in/b.csv", Body=b"customer_id,kwh\n1,11\n3,30\n,99\n")
    name = unique()
    arn = await local.create_processing_job(
        processing_request(
            name,
            [("local", str(tmp_path / "local-in")), ("remote", f"s3://{BUCKET}/in")],
            f"s3://{BUCKET}/out/{name}",
        )
    )
    assert arn.endswith(f"processing-job/{name}")
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert done.training_start_time is not None
    assert done.training_end_time is not None
    keys = {
        obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"out/{name}/")["Contents"]
    }
    assert keys == {f"out/{name}/{file}" for file in ("1.csv", "2.csv", "3.csv", "summary.json")}
    body = s3.get_object(Bucket=BUCKET, Key=f"out/{name}/1.csv")["Body"].read().decode()
    assert body.splitlines() == ["customer_id,kwh", "1,10", "1,11"]
    summary = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"out/{name}/summary.json")["Body"].read()
    )
    assert summary == {"rows": {"1": 2, "2": 1, "3": 1}, "skipped": 1}


async def test_outputs_may_go_to_a_local_folder(local: LocalProcessBackend, tmp_path: Path) -> None:
    """An output S3Uri that is a local path receives the output folder's files."""
    write_csv(tmp_path / "in" / "a.csv", [{"customer_id": "7", "kwh": "1"}])
    name = unique()
    out = tmp_path / "split-out"
    await local.create_processing_job(
        processing_request(name, [("data", (tmp_path / "in").as_uri())], str(out))
    )
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert sorted(p.name for p in out.iterdir()) == ["7.csv", "summary.json"]


async def test_a_failing_script_reports_its_message(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A script that writes /opt/ml/output/message and exits 1 ends Failed with that text
    and the exit code in FailureReason; its outputs are uploaded all the same."""
    write_csv(tmp_path / "in" / "a.csv", [{"customer_id": "1", "kwh": "1"}])
    name = unique()
    request = processing_request(
        name,
        [("data", str(tmp_path / "in"))],
        str(tmp_path / "out"),
        *("--input", "/opt/ml/processing/input", "--output", "/opt/ml/processing/output/split"),
        *("--key", "tenant", "--message-file", "/opt/ml/output/message"),
    )
    await local.create_processing_job(request)
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert done.failure_reason.startswith("AlgorithmError: a.csv has no column 'tenant'")
    assert done.failure_reason.endswith("exit code 1")
    assert (tmp_path / "out").is_dir()


async def test_names_are_idempotency_keys_per_kind(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """The same processing job name twice is TrainingJobAlreadyExists; a training job may
    have the same name (SageMaker keeps the kinds apart); listings keep them apart too."""
    write_csv(tmp_path / "in" / "a.csv", [{"customer_id": "1", "kwh": "1"}])
    name = unique()
    request = processing_request(name, [("data", str(tmp_path / "in"))], str(tmp_path / "out"))
    await local.create_processing_job(request)
    with pytest.raises(TrainingJobAlreadyExists) as caught:
        await local.create_processing_job(request)
    assert "processing job" in str(caught.value)
    with pytest.raises(TrainingJobNotFound):
        await local.describe_training_job(name)
    await finished(local, name)
    listed = await local.list_processing_jobs()
    assert [(row.name, row.kind) for row in listed] == [(name, JobKind.PROCESSING)]
    assert await local.list_training_jobs() == []
    assert local.calls["CreateProcessingJob"] == 2


async def test_a_running_processing_job_can_be_stopped(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """StopProcessingJob ends a running job Stopped; a second stop changes nothing."""
    name = unique()
    request = processing_request(name, [], str(tmp_path / "out"))
    request["AppSpecification"]["ContainerEntrypoint"] = ["python", "-c"]
    request["AppSpecification"]["ContainerArguments"] = ["import time; time.sleep(120)"]
    await local.create_processing_job(request)

    async def running() -> bool:
        return (await local.describe_processing_job(name)).secondary_status == "Training"

    await poll_until(running, 20.0, interval_s=0.05)
    await local.stop_processing_job(name)
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.STOPPED
    await local.stop_processing_job(name)
    assert (await local.describe_processing_job(name)).status is TrainingJobStatus.STOPPED


WHAT_EACH_HOST_SEES = """
import json, os, pathlib
root = pathlib.Path(os.environ["HOME"], "opt/ml")
config = json.loads((root / "config/resourceconfig.json").read_text())
host = config["current_host"]
seen = {
    name: sorted(p.name for p in (root / "processing/input" / name).iterdir())
    for name in ("shards", "common")
}
out = root / "processing/output/split"
(out / (host + ".json")).write_text(json.dumps({"config": config, "seen": seen}))
(out / "shared.txt").write_text(host)
"""


async def test_a_job_of_several_instances_runs_a_host_each_and_uploads_every_hosts_outputs(
    local: LocalProcessBackend, s3: Any, tmp_path: Path
) -> None:
    """ClusterConfig.InstanceCount 2: two hosts, each named in its resourceconfig.json, each
    given its share of a ShardedByS3Key input and all of a FullyReplicated one; both hosts'
    outputs land under the output's S3Uri, the later host's file where both wrote a name."""
    shards = [f"{letter}.csv" for letter in "abcde"]
    for key in shards:
        write_csv(tmp_path / "shards" / key, [{"customer_id": key, "kwh": "1"}])
    write_csv(tmp_path / "common" / "rates.csv", [{"customer_id": "*", "kwh": "0.3"}])
    name = unique()
    request = processing_request(
        name,
        [("shards", str(tmp_path / "shards")), ("common", str(tmp_path / "common"))],
        f"s3://{BUCKET}/out/{name}",
    )
    request["AppSpecification"]["ContainerEntrypoint"] = ["python", "-c"]
    request["AppSpecification"]["ContainerArguments"] = [WHAT_EACH_HOST_SEES]
    request["ProcessingInputs"][0]["S3Input"]["S3DataDistributionType"] = "ShardedByS3Key"
    request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 2
    await local.create_processing_job(request)
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason

    def uploaded(file: str) -> bytes:
        body: bytes = s3.get_object(Bucket=BUCKET, Key=f"out/{name}/{file}")["Body"].read()
        return body

    keys = {
        obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"out/{name}/")["Contents"]
    }
    assert keys == {f"out/{name}/{file}" for file in ("algo-1.json", "algo-2.json", "shared.txt")}
    for index, host in enumerate(("algo-1", "algo-2")):
        seen = json.loads(uploaded(f"{host}.json"))
        assert seen["config"] == {
            "current_host": host,
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "lo",
        }
        assert seen["seen"] == {
            "shards": keys_for_host(shards, index, 2),
            "common": ["rates.csv"],
        }
    assert uploaded("shared.txt") == b"algo-2"


FAIL_ON_ALGO_2 = """
import json, os, pathlib, time
root = pathlib.Path(os.environ["HOME"], "opt/ml")
host = json.loads((root / "config/resourceconfig.json").read_text())["current_host"]
if host == "algo-2":
    (root / "output/message").write_text("shard 2 is unreadable")
    raise SystemExit(3)
while True:
    time.sleep(0.05)
"""


async def test_a_failing_host_fails_the_job_with_its_name_and_stops_the_others(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """algo-2 fails at once while algo-1 would run forever: the job fails with algo-2's
    message, named, and ends without waiting for algo-1."""
    name = unique()
    request = processing_request(name, [], str(tmp_path / "out"))
    request["AppSpecification"]["ContainerEntrypoint"] = ["python", "-c"]
    request["AppSpecification"]["ContainerArguments"] = [FAIL_ON_ALGO_2]
    request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 2
    await local.create_processing_job(request)
    done = await finished(local, name)
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == "AlgorithmError: algo-2: shard 2 is unreadable; exit code 3"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"InstanceCount": 0},
            "ProcessingResources.ClusterConfig.InstanceCount must be an integer >= 1, got 0",
        ),
        (
            {"InstanceCount": 9},
            "ProcessingResources.ClusterConfig.InstanceCount 9 is over the local limit of 8",
        ),
        (
            {"S3DataDistributionType": "ByHash"},
            "ProcessingInputs.0.S3Input: S3DataDistributionType 'ByHash' is not one of",
        ),
    ],
)
async def test_bad_cluster_and_distribution_settings_are_refused_naming_the_field(
    local: LocalProcessBackend, change: dict[str, Any], message: str
) -> None:
    request = processing_request(unique(), [("data", "s3://b/k")], "s3://b/out")
    if "InstanceCount" in change:
        request["ProcessingResources"]["ClusterConfig"].update(change)
    else:
        request["ProcessingInputs"][0]["S3Input"].update(change)
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        await local.create_processing_job(request)


async def test_bad_requests_are_refused_naming_the_field(local: LocalProcessBackend) -> None:
    """A LocalPath outside /opt/ml/ and an entrypoint the rules do not allow are refused
    before anything runs; an unknown name is not found."""
    request = processing_request(unique(), [("data", "s3://b/k")], "s3://b/out")
    request["ProcessingInputs"][0]["S3Input"]["LocalPath"] = "/etc/input"
    with pytest.raises(InvalidRequest, match=r"ProcessingInputs\.0\.S3Input\.LocalPath"):
        await local.create_processing_job(request)
    request = processing_request(unique(), [], "s3://b/out")
    request["AppSpecification"]["ContainerEntrypoint"] = ["bash", "-c", "rm -rf /"]
    with pytest.raises(InvalidRequest, match="not an allowed local entrypoint"):
        await local.create_processing_job(request)
    with pytest.raises(TrainingJobNotFound):
        await local.describe_processing_job("no-such-job")
    with pytest.raises(TrainingJobNotFound):
        await local.stop_processing_job("no-such-job")


async def test_the_sagemaker_adapter_speaks_the_processing_api(moto_endpoint: str, s3: Any) -> None:
    """CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs through aiobotocore
    against moto's SageMaker: the job is described and listed as a processing job."""
    backend = SageMakerBackend(endpoint_url=moto_endpoint)
    await backend.start()
    try:
        name = unique()
        request = processing_request(name, [("data", f"s3://{BUCKET}/in")], f"s3://{BUCKET}/o")
        arn = await backend.create_processing_job(request)
        assert arn.endswith(f"processing-job/{name}")
        described = await backend.describe_processing_job(name)
        assert described.name == name
        assert described.arn == arn
        listed = await backend.list_processing_jobs()
        assert (name, JobKind.PROCESSING) in {(row.name, row.kind) for row in listed}
        assert backend.calls["ListProcessingJobs"] == 1
        with pytest.raises(TrainingJobNotFound):
            await backend.describe_processing_job("no-such-job")
    finally:
        await backend.close()


async def test_the_simulator_runs_processing_jobs_through_the_sagemaker_adapter(
    s3: Any,
) -> None:
    """The SageMaker-API simulator serves the processing operations over the wire: a job
    runs to Completed with its times, is listed as a processing job, can be stopped, and
    its name is taken once; training jobs of the same name are apart."""
    faults = FaultConfig(
        startup_s=0.1, duration=DurationSpec(kind="fixed", seconds=1.0), stop_s=0.1, seed=7
    )
    async with SimulatorServer(faults) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            name = unique()
            request = processing_request(name, [("data", "s3://b/in")], "s3://b/out")
            arn = await backend.create_processing_job(request)
            assert arn.endswith(f"processing-job/{name}")
            with pytest.raises(TrainingJobAlreadyExists):
                await backend.create_processing_job(request)
            with pytest.raises(TrainingJobNotFound):
                await backend.describe_training_job(name)

            async def ended() -> bool:
                return (await backend.describe_processing_job(name)).status.terminal

            await poll_until(ended, 20.0, interval_s=0.05)
            done = await backend.describe_processing_job(name)
            assert done.status is TrainingJobStatus.COMPLETED
            assert done.training_start_time is not None
            assert done.training_end_time is not None
            assert done.instance_type == "ml.m5.large"
            listed = await backend.list_processing_jobs()
            assert [(row.name, row.kind) for row in listed] == [(name, JobKind.PROCESSING)]
            assert await backend.list_training_jobs() == []

            running = unique()
            await backend.create_processing_job(
                processing_request(running, [("data", "s3://b/in")], "s3://b/out")
            )
            await backend.stop_processing_job(running)

            async def stopped() -> bool:
                return (await backend.describe_processing_job(running)).status.terminal

            await poll_until(stopped, 20.0, interval_s=0.05)
            final = await backend.describe_processing_job(running)
            assert final.status is TrainingJobStatus.STOPPED
            await backend.stop_processing_job(running)  # ended: nothing to do
        finally:
            await backend.close()
