"""A training job in the sagemaker SDK's source-code layout (`ModelTrainer` with a
`SourceCode`) runs on the local backend as its `SourceCode.command`, checked against the
allowed entrypoints; the SDK's shell driver never runs, and what needs code shipped with
the job or a shell is refused, naming the field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.policy import LocalRunRules, Policy
from stoker.core.source_code import (
    SDK_ARGUMENTS,
    SDK_ENTRYPOINT,
    SourceCodeRefused,
    is_source_code_job,
    source_code_command,
)
from stoker.core.spec import JobSpec
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until

LINEAR = "python -m stoker.training_scripts.train_linear"


def sdk_request(name: str, tmp_path: Path, source_code: dict[str, Any]) -> dict[str, Any]:
    """What ModelTrainer(source_code=...).train() sends, with its drivers channel local."""
    drivers = tmp_path / name / "sm_drivers"
    drivers.mkdir(parents=True)
    (drivers / "sourcecode.json").write_text(json.dumps(source_code))
    (drivers / "distributed.json").write_text("{}")
    # The SDK's shell script: were it run, the job would write this marker and fail.
    (drivers / "sm_train.sh").write_text(f"#!/bin/bash\ntouch {tmp_path}/shell-ran\nexit 3\n")
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {
            "TrainingImage": "stoker/train-linear:local",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": list(SDK_ENTRYPOINT),
            "ContainerArguments": list(SDK_ARGUMENTS),
        },
        "HyperParameters": {"epochs": "7"},
        "InputDataConfig": [
            {
                "ChannelName": "sm_drivers",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": drivers.as_uri()}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": (tmp_path / "out").as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    rules = LocalRunRules(entrypoints=shipped_entrypoints())
    local = LocalProcessBackend(tmp_path / "work", stop_grace_s=5.0, rules=rules)
    await local.start()
    yield local
    await local.close()


async def finished(backend: LocalProcessBackend, name: str) -> TrainingJobDescription:
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await backend.describe_training_job(name))
        return seen[-1].status.terminal

    await poll_until(ended, 30.0, interval_s=0.05)
    return seen[-1]


async def test_the_source_codes_command_runs_in_place_of_the_sdks_driver(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """The shipped script runs with the job's hyperparameters; the shell script does not."""
    await backend.create_training_job(sdk_request("sdk-linear", tmp_path, {"command": LINEAR}))
    done = await finished(backend, "sdk-linear")
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    model = json.loads((backend.work_dir / "sdk-linear/opt/ml/model/model.json").read_text())
    assert model["epochs"] == 7
    assert not (tmp_path / "shell-ran").exists()


async def test_a_source_code_command_not_allowed_fails_before_it_runs(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    await backend.create_training_job(
        sdk_request("sdk-other", tmp_path, {"command": "python -m http.server"})
    )
    done = await finished(backend, "sdk-other")
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert done.failure_reason.startswith("ClientError: SourceCode.command:")
    assert "not an allowed local entrypoint" in done.failure_reason
    assert not (tmp_path / "shell-ran").exists()


async def test_an_entry_script_shipped_with_the_job_is_refused(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    await backend.create_training_job(
        sdk_request("sdk-script", tmp_path, {"entry_script": "train.py", "source_dir": "."})
    )
    done = await finished(backend, "sdk-script")
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert "SourceCode.entry_script" in done.failure_reason


def test_the_command_is_split_as_the_sdk_splits_it_then_the_args() -> None:
    assert source_code_command({"command": f"  {LINEAR} ", "args": ["--x", 2, 0.5]}) == [
        "python",
        "-m",
        "stoker.training_scripts.train_linear",
        "--x",
        "2",
        "0.5",
    ]


@pytest.mark.parametrize(
    ("source_code", "distributed", "field"),
    [
        ({"command": f"{LINEAR} && curl x"}, None, "SourceCode.command"),
        ({"command": "python $HOME/x.py"}, None, "SourceCode.command"),
        ({}, None, "SourceCode.command"),
        ({"command": LINEAR, "requirements": "requirements.txt"}, None, "SourceCode.requirements"),
        ({"command": LINEAR, "args": [{"a": 1}]}, None, "SourceCode.args"),
        ({"command": LINEAR}, {"process_count_per_node": 2}, "distributed driver"),
    ],
)
def test_what_needs_a_shell_or_shipped_code_is_refused_naming_the_field(
    source_code: dict[str, Any], distributed: dict[str, Any] | None, field: str
) -> None:
    with pytest.raises(SourceCodeRefused, match=field):
        source_code_command(source_code, distributed)


def test_only_the_sdks_exact_driver_and_channel_make_a_source_code_job(tmp_path: Path) -> None:
    request = sdk_request("layout", tmp_path, {"command": LINEAR})
    assert is_source_code_job(request)
    other = json.loads(json.dumps(request))
    other["AlgorithmSpecification"]["ContainerArguments"] = ["-c", "curl x | sh"]
    assert not is_source_code_job(other)
    no_channel = json.loads(json.dumps(request))
    no_channel["InputDataConfig"][0]["ChannelName"] = "code"
    assert not is_source_code_job(no_channel)


def test_submit_leaves_the_command_to_the_backend_but_not_another_bash(tmp_path: Path) -> None:
    """At submit the command is not known yet (it is in the channel): the SDK's layout
    passes the entrypoint rule, any other bash command does not."""
    policy = Policy().with_local_entrypoints(shipped_entrypoints())
    request = sdk_request("submit", tmp_path, {"command": LINEAR})
    spec = JobSpec.model_validate({"training": request})
    assert policy.violations(spec, "default", local_runs=True) == []
    request["AlgorithmSpecification"]["ContainerArguments"] = ["-c", "echo hi"]
    spec = JobSpec.model_validate({"training": request})
    assert [v.rule for v in policy.violations(spec, "default", local_runs=True)] == [
        "local.entrypoints"
    ]
