"""Training jobs of several instances on the local backend: one process per host, each with
its own /opt/ml tree and SageMaker's host variables, ShardedByS3Key channels split between
them, checkpoints restored and saved through CheckpointConfig, and a host killed mid-training
whose job, submitted again with the same checkpoints, fits every model exactly once."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.policy import LocalRunRules
from stoker.core.sharding import shard_keys
from stoker.ports.training import InvalidRequest, TrainingJobDescription, TrainingJobStatus
from stoker.training_scripts import energy_data, shipped_entrypoints, train_customers
from tests.support.fleet_s3 import FLEET_BUCKET, moto_s3, s3_client, upload_customers
from tests.support.waiting import poll_until

SCRIPTS = Path(train_customers.__file__).parent
COUNTING = Path(__file__).with_name("counting_train.py")
DONE_WITHIN_S = 120.0

SHAPE = """
import json, os, pathlib
host = os.environ["SM_CURRENT_HOST"]
config = pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"])
files = {}
for channel in json.loads(os.environ["SM_CHANNELS"]):
    root = pathlib.Path(os.environ["SM_CHANNEL_" + channel.upper()])
    files[channel] = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
shape = {
    "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
    "resourceconfig": json.loads((config / "resourceconfig.json").read_text()),
    "inputdataconfig": json.loads((config / "inputdataconfig.json").read_text()),
    "files": files,
    "checkpoints": sorted(p.name for p in pathlib.Path(os.environ["SM_CHECKPOINT_DIR"]).iterdir()),
}
pathlib.Path(os.environ["SM_MODEL_DIR"], "shape-" + host + ".json").write_text(json.dumps(shape))
"""
"""A training script that writes what its host sees into the model folder."""

FAIL_ON_ALGO_2 = """
import os, pathlib, time
if os.environ["SM_CURRENT_HOST"] == "algo-2":
    pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("shard 2 is unreadable")
    raise SystemExit(3)
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "running").touch()
while True:
    time.sleep(0.05)
"""

SAME_NAMES = """
import os, pathlib
host = os.environ["SM_CURRENT_HOST"]
for folder in (os.environ["SM_MODEL_DIR"], os.environ["SM_OUTPUT_DATA_DIR"]):
    nested = pathlib.Path(folder, "nested")
    nested.mkdir(parents=True, exist_ok=True)
    (nested / "shared.txt").write_text(host)
    (nested / (host + ".txt")).write_text(host)
"""
"""A training script whose hosts write a file of the same name and one of their own."""

RUN_UNTIL_STOPPED = """
import os, pathlib, time
pathlib.Path(os.environ["HOME"], "..", "running-" + os.environ["SM_CURRENT_HOST"]).touch()
while True:
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto server speaking the S3 API on a free loopback port."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stoker-local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stoker-local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
async def backend(
    tmp_path: Path, aws_credentials: None, s3_endpoint: str
) -> AsyncIterator[LocalProcessBackend]:
    rules = LocalRunRules(
        entrypoints=[*shipped_entrypoints(), ["python", "-c"], ["python", str(COUNTING)]],
        max_instance_count=3,
    )
    local = LocalProcessBackend(
        tmp_path / "work", stop_grace_s=5.0, s3_endpoint=s3_endpoint, rules=rules
    )
    await local.start()
    yield local
    await local.close()


def request(
    name: str,
    tmp_path: Path,
    command: list[str],
    *,
    instances: int,
    channels: dict[str, tuple[str, str]] | None = None,
    checkpoint_uri: str | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A CreateTrainingJob request; `channels`: name -> (URI, S3DataDistributionType)."""
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {
            "TrainingImage": "local",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": command,
        },
        "OutputDataConfig": {"S3OutputPath": (tmp_path / "out").as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": instances},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": distribution,
                    }
                },
            }
            for channel, (uri, distribution) in (channels or {}).items()
        ],
    }
    if checkpoint_uri:
        body["CheckpointConfig"] = {"S3Uri": checkpoint_uri}
    if environment:
        body["Environment"] = environment
    return body


async def finished(backend: LocalProcessBackend, name: str) -> TrainingJobDescription:
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await backend.describe_training_job(name))
        return seen[-1].status.terminal

    await poll_until(ended, DONE_WITHIN_S, interval_s=0.05, what=f"the end of {name}")
    return seen[-1]


def model_files(done: TrainingJobDescription) -> dict[str, bytes]:
    """The files of a completed job's model.tar.gz, by name."""
    assert done.model_artifacts is not None
    with tarfile.open(urlparse(done.model_artifacts).path) as tar:
        return {
            member.name: extracted.read()
            for member in tar.getmembers()
            if (extracted := tar.extractfile(member)) is not None
        }


def output_files(tmp_path: Path, name: str) -> dict[str, bytes]:
    """The files of a job's output.tar.gz (its hosts' /opt/ml/output/data), by name."""
    with tarfile.open(tmp_path / "out" / name / "output" / "output.tar.gz") as tar:
        return {
            member.name: extracted.read()
            for member in tar.getmembers()
            if (extracted := tar.extractfile(member)) is not None
        }


def write_files(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)


async def test_each_host_has_its_own_layout_variables_and_shard(
    backend: LocalProcessBackend, tmp_path: Path, s3_endpoint: str
) -> None:
    """Two hosts: SM_HOSTS, SM_CURRENT_HOST and resourceconfig.json as SageMaker writes
    them; a ShardedByS3Key channel (from S3 and from a local folder) split between the hosts
    by the documented rule; a FullyReplicated one copied whole to each; the checkpoints
    restored into each host's CheckpointConfig.LocalPath; one model.tar.gz holding both
    hosts' model folders."""
    s3_keys = [f"{c}/data.csv" for c in (0, 1, 2, 10, 11)]
    for key in s3_keys:
        s3_client(s3_endpoint).put_object(
            Bucket=FLEET_BUCKET, Key=f"shape/train/{key}", Body=key.encode()
        )
    write_files(tmp_path / "local", ["a.csv", "b.csv", "c/d.csv"])
    write_files(tmp_path / "extra", ["x.json", "y.json"])
    channels = {
        "train": (f"s3://{FLEET_BUCKET}/shape/train", "ShardedByS3Key"),
        "local": (str(tmp_path / "local"), "ShardedByS3Key"),
        "extra": ((tmp_path / "extra").as_uri(), "FullyReplicated"),
    }
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resume.txt").write_text("from an earlier attempt")
    body = request(
        "shape",
        tmp_path,
        ["python", "-c", SHAPE],
        instances=2,
        channels=channels,
        checkpoint_uri=str(tmp_path / "checkpoints"),
    )
    body["CheckpointConfig"]["LocalPath"] = "/opt/ml/checkpoints/run"
    await backend.create_training_job(body)
    done = await finished(backend, "shape")
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    files = model_files(done)
    assert sorted(files) == ["shape-algo-1.json", "shape-algo-2.json"]
    train_shards = shard_keys(s3_keys, 2)
    local_shards = shard_keys(["a.csv", "b.csv", "c/d.csv"], 2)
    for index, host in enumerate(["algo-1", "algo-2"]):
        shape = json.loads(files[f"shape-{host}.json"])
        env, config = shape["env"], shape["resourceconfig"]
        assert env["SM_CURRENT_HOST"] == host
        assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"]
        assert env["SM_NETWORK_INTERFACE_NAME"] == "lo"
        assert env["SM_NUM_GPUS"] == "0"
        assert int(env["SM_NUM_CPUS"]) == max(1, (os.cpu_count() or 1) // 2)
        assert json.loads(env["SM_RESOURCE_CONFIG"]) == config
        assert config["current_host"] == host
        assert config["hosts"] == ["algo-1", "algo-2"]
        assert config["network_interface_name"] == "lo"
        assert config["current_instance_type"] == "ml.m5.large"
        assert config["instance_groups"] == [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": "ml.m5.large",
                "hosts": ["algo-1", "algo-2"],
            }
        ]
        assert {name: c["S3DistributionType"] for name, c in shape["inputdataconfig"].items()} == {
            "train": "ShardedByS3Key",
            "local": "ShardedByS3Key",
            "extra": "FullyReplicated",
        }
        assert env["SM_CHECKPOINT_DIR"].endswith("/opt/ml/checkpoints/run")
        assert shape["checkpoints"] == ["resume.txt"]  # restored into every host's folder
        assert shape["files"] == {
            "train": train_shards[index],
            "local": local_shards[index],
            "extra": ["x.json", "y.json"],
        }
    # The rule itself, spelled out: key i of the sorted keys goes to host i mod 2.
    assert train_shards == [
        ["0/data.csv", "10/data.csv", "2/data.csv"],
        ["1/data.csv", "11/data.csv"],
    ]


async def test_a_failing_host_fails_the_job_with_its_reason_and_stops_the_others(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """algo-2 fails at once while algo-1 would run forever: the job fails with algo-2's
    reason, naming the host, and ends without waiting for algo-1."""
    await backend.create_training_job(
        request("one-fails", tmp_path, ["python", "-c", FAIL_ON_ALGO_2], instances=2)
    )
    done = await finished(backend, "one-fails")
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == "AlgorithmError: algo-2: shard 2 is unreadable"


async def test_the_archives_hold_every_hosts_files_and_the_last_hosts_of_a_shared_name(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """model.tar.gz and output.tar.gz hold the union of the hosts' folders, nested files
    included; where hosts wrote the same name, the last host's file is the one kept."""
    await backend.create_training_job(
        request("same-names", tmp_path, ["python", "-c", SAME_NAMES], instances=3)
    )
    done = await finished(backend, "same-names")
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    expected = {
        "nested/shared.txt": b"algo-3",
        **{f"nested/algo-{n}.txt": f"algo-{n}".encode() for n in (1, 2, 3)},
    }
    assert model_files(done) == expected
    assert output_files(tmp_path, "same-names") == expected


async def test_a_stop_ends_every_host(backend: LocalProcessBackend, tmp_path: Path) -> None:
    await backend.create_training_job(
        request("stopped", tmp_path, ["python", "-c", RUN_UNTIL_STOPPED], instances=3)
    )
    hosts = backend.work_dir / "stopped" / "hosts"

    async def all_running() -> bool:
        return all((hosts / f"running-algo-{n}").exists() for n in (1, 2, 3))

    await poll_until(all_running, DONE_WITHIN_S, interval_s=0.05, what="three hosts running")
    await backend.stop_training_job("stopped")
    done = await finished(backend, "stopped")
    assert done.status is TrainingJobStatus.STOPPED
    assert done.secondary_status == "Stopped"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"InstanceCount": 0}, "ResourceConfig.InstanceCount must be an integer >= 1, got 0"),
        ({"InstanceCount": "2"}, "ResourceConfig.InstanceCount must be an integer >= 1, got '2'"),
        ({"InstanceCount": 4}, "ResourceConfig.InstanceCount 4 is over the local limit of 3"),
        ({"S3DataDistributionType": "ByHash"}, "S3DataDistributionType 'ByHash' is not one of"),
        ({"LocalPath": "/tmp/checkpoints"}, "CheckpointConfig.LocalPath '/tmp/checkpoints'"),
    ],
)
async def test_bad_requests_name_the_field(
    backend: LocalProcessBackend, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    body = request(
        "bad",
        tmp_path,
        ["python", "-c", "pass"],
        instances=2,
        channels={"train": (str(tmp_path), "ShardedByS3Key")},
        checkpoint_uri=str(tmp_path / "checkpoints"),
    )
    if "InstanceCount" in change:
        body["ResourceConfig"].update(change)
    elif "LocalPath" in change:
        body["CheckpointConfig"].update(change)
    else:
        body["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(change)
    with pytest.raises(InvalidRequest, match=message):
        await backend.create_training_job(body)


async def test_a_killed_host_then_a_resubmitted_job_fits_every_model_exactly_once(
    backend: LocalProcessBackend, tmp_path: Path, s3_endpoint: str
) -> None:
    """Two hosts train six customers (a ShardedByS3Key channel from S3) with their
    checkpoints in S3. algo-1's worker is SIGKILLed in the middle of its second fit: the job
    fails, naming the host and the signal. The same job submitted again with the same
    CheckpointConfig finds the finished models restored, fits only the missing ones, and
    completes: every customer's model was completed exactly once, and the second job's
    model.tar.gz holds them all."""
    customers = upload_customers(s3_endpoint, "resume/data", 6)
    markers = tmp_path / "markers"
    markers.mkdir()
    environment = {"FIT_MARKERS": str(markers), "KILL_HOST": "algo-1", "KILL_AFTER": "1"}
    checkpoints = f"s3://{FLEET_BUCKET}/resume/checkpoints"
    channels = {"train": (f"s3://{FLEET_BUCKET}/resume/data", "ShardedByS3Key")}
    command = ["python", str(COUNTING), str(SCRIPTS), "--uncertainty-samples", "10"]

    def job(name: str) -> dict[str, Any]:
        return request(
            name,
            tmp_path,
            command,
            instances=2,
            channels=channels,
            checkpoint_uri=checkpoints,
            environment=environment,
        )

    await backend.create_training_job(job("fleet-1"))
    first = await finished(backend, "fleet-1")
    assert first.status is TrainingJobStatus.FAILED
    assert first.failure_reason == "AlgorithmError: algo-1: exit code -9"
    assert (markers / "killed").exists()
    saved = s3_client(s3_endpoint).list_objects_v2(
        Bucket=FLEET_BUCKET, Prefix="resume/checkpoints/"
    )
    saved_models = {obj["Key"].rsplit("/", 1)[1] for obj in saved.get("Contents", [])}
    assert "0.tar.gz" in saved_models  # algo-1's first model, finished before the kill
    assert "2.tar.gz" not in saved_models  # the fit it was killed in

    await backend.create_training_job(job("fleet-2"))
    second = await finished(backend, "fleet-2")
    assert second.status is TrainingJobStatus.COMPLETED, second.failure_reason

    completed = Counter(marker.name.split(".tar.gz")[0] for marker in markers.glob("*.tar.gz.*"))
    assert completed == dict.fromkeys(customers, 1)
    models = model_files(second)
    assert sorted(models) == sorted(f"{c}.tar.gz" for c in customers)
    with tarfile.open(fileobj=io.BytesIO(models["2.tar.gz"])) as artifact:
        assert "model.json" in artifact.getnames()
    reports = output_files(tmp_path, "fleet-2")
    assert sorted(reports) == ["report-algo-1.json", "report-algo-2.json"]
    fitted = [c for r in reports.values() for c in json.loads(r)["fitted"]]
    skipped = [c for r in reports.values() for c in json.loads(r)["skipped"]]
    assert "0" in skipped
    assert sorted(fitted + skipped) == customers


async def test_a_failed_model_fails_its_host_with_a_report_naming_it(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """One customer of four has no usable rows: the other three are fitted, the job fails
    with a FailureReason naming the model and why, and the host's report (output.tar.gz)
    says what it did. One host: with two, the failing host stops the other (as on
    SageMaker) at a moment no test can fix, so which of its models are done would vary."""
    data = tmp_path / "data"
    frame = energy_data.generate(
        customers=3, rows_per_customer=40, start=datetime(2021, 1, 1), end=datetime(2023, 1, 1)
    )
    energy_data.write_per_customer(frame, data)
    (data / "3").mkdir()
    (data / "3" / "data.csv").write_text("customer_id,timestamp,consumption\n3,soon,1\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    command = ["python", str(COUNTING), str(SCRIPTS), "--uncertainty-samples", "10"]
    await backend.create_training_job(
        request(
            "with-failure",
            tmp_path,
            command,
            instances=1,
            channels={"train": (str(data), "ShardedByS3Key")},
            checkpoint_uri=str(tmp_path / "checkpoints"),
            environment={"FIT_MARKERS": str(markers)},
        )
    )
    done = await finished(backend, "with-failure")
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == (
        "AlgorithmError: 1 of 4 models failed "
        "(3: ValueError: 0 usable row(s): a model needs at least 2); see report-algo-1.json"
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "0.tar.gz",
        "1.tar.gz",
        "2.tar.gz",
    ]
    reports = {
        name: json.loads(text) for name, text in output_files(tmp_path, "with-failure").items()
    }
    assert reports["report-algo-1.json"]["failed"] == {
        "3": "ValueError: 0 usable row(s): a model needs at least 2"
    }
    assert reports["report-algo-1.json"]["bad_rows"] == {
        "3": {"count": 1, "examples": ["line 2: timestamp 'soon' is not ISO 8601"]}
    }
    assert reports["report-algo-1.json"]["fitted"] == ["0", "1", "2"]


CHECKPOINT_THEN_WAIT = """
import os, pathlib, time
checkpoints = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])
(checkpoints / ".partial").write_text("half")
(checkpoints / ("early-" + os.environ["SM_CURRENT_HOST"])).write_text("saved while running")
go = pathlib.Path(os.environ["GO"])
while not go.exists():
    time.sleep(0.05)
"""


async def test_checkpoints_are_saved_while_the_hosts_run(tmp_path: Path) -> None:
    """With a short checkpoint period, what the hosts write reaches CheckpointConfig before
    they end; a dot-file (a write in progress) never does."""
    backend = LocalProcessBackend(
        tmp_path / "work",
        stop_grace_s=5.0,
        checkpoint_period_s=0.1,
        rules=LocalRunRules(entrypoints=[["python", "-c"]]),
    )
    await backend.start()
    saved = tmp_path / "checkpoints"
    try:
        await backend.create_training_job(
            request(
                "periodic",
                tmp_path,
                ["python", "-c", CHECKPOINT_THEN_WAIT],
                instances=2,
                checkpoint_uri=saved.as_uri(),
                environment={"GO": str(tmp_path / "go")},
            )
        )

        async def both_saved() -> bool:
            return (saved / "early-algo-1").exists() and (saved / "early-algo-2").exists()

        await poll_until(both_saved, DONE_WITHIN_S, interval_s=0.05, what="checkpoints saved")
        running = await backend.describe_training_job("periodic")
        assert running.status is TrainingJobStatus.IN_PROGRESS
        (tmp_path / "go").touch()
        done = await finished(backend, "periodic")
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
        assert sorted(p.name for p in saved.iterdir()) == ["early-algo-1", "early-algo-2"]
    finally:
        await backend.close()


async def test_the_shipped_script_by_file_resumes_from_a_local_checkpoint_folder(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """One host, its checkpoints in a local folder (used in place): the shipped script, run
    by file as SageMaker runs a script beside its modules, fits every customer; the same
    job submitted again fits none and still publishes every model."""
    data = tmp_path / "data"
    frame = energy_data.generate(
        customers=2, rows_per_customer=40, start=datetime(2021, 1, 1), end=datetime(2023, 1, 1)
    )
    energy_data.write_per_customer(frame, data)
    command = ["python", str(SCRIPTS / "train_customers.py"), "--uncertainty-samples", "10"]
    reports = []
    for name in ("by-file-1", "by-file-2"):
        await backend.create_training_job(
            request(
                name,
                tmp_path,
                command,
                instances=1,
                channels={"train": (str(data), "FullyReplicated")},
                checkpoint_uri=str(tmp_path / "checkpoints"),
            )
        )
        done = await finished(backend, name)
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
        assert sorted(model_files(done)) == ["0.tar.gz", "1.tar.gz"]
        reports.append(json.loads(output_files(tmp_path, name)["report-algo-1.json"]))
    assert [(r["fitted"], r["skipped"]) for r in reports] == [(["0", "1"], []), ([], ["0", "1"])]
