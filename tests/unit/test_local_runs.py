"""The local process backend runs only allowed entrypoints, in an environment built from
nothing (none of the service's secrets), in the job's own folder, under resource limits."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.policy import load_policy, submission_rules
from stoker.core.policy import LocalRunRules
from stoker.ports.training import (
    InvalidRequest,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
)
from stoker.settings import Mode, Settings
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEPARENTKEY",
    "AWS_SECRET_ACCESS_KEY": "parent-secret-access-key",
    "AWS_SESSION_TOKEN": "parent-session-token",
    "STOKER_NOTIFY_SECRETS": '{"hook": "parent-webhook-secret"}',
    "STOKER_NOTIFY_SLACK_TOKEN": "xoxb-parent-slack-token",
}
"""What a service's environment holds and no training process may see."""

PRINT_ENV = "import json, os; print('ENV=' + json.dumps({**os.environ, 'CWD': os.getcwd()}))"
PRINT_LIMITS = (
    "import json, resource as r; print('LIMITS=' + json.dumps("
    "[r.getrlimit(r.RLIMIT_CPU), r.getrlimit(r.RLIMIT_AS), r.getrlimit(r.RLIMIT_NOFILE)]))"
)


def request(name: str, tmp_path: Path, *command: str, **environment: str) -> dict[str, Any]:
    algorithm: dict[str, Any] = {"TrainingImage": "local", "TrainingInputMode": "File"}
    algorithm["ContainerEntrypoint"] = list(command)
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": algorithm,
        "OutputDataConfig": {"S3OutputPath": (tmp_path / "out").as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }
    if environment:
        body["Environment"] = environment
    return body


def rules(**limits: int | None) -> LocalRunRules:
    return LocalRunRules(entrypoints=[*shipped_entrypoints(), ["python", "-c"]], **limits)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    local = LocalProcessBackend(tmp_path / "work", stop_grace_s=5.0, rules=rules())
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


def printed(backend: LocalProcessBackend, name: str, tag: str) -> Any:
    logs = (backend.work_dir / name / "logs.txt").read_text()
    line = next(line for line in logs.splitlines() if line.startswith(tag))
    return json.loads(line[len(tag) :])


async def test_the_child_sees_none_of_the_services_secrets(
    backend: LocalProcessBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AWS keys, a session token and notification secrets in the service's environment,
    the training process sees only its own Environment, the SageMaker variables, and a
    PATH, HOME, TMPDIR and LANG of its own; it runs in its job folder."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    await backend.create_training_job(
        request("env-job", tmp_path, "python", "-c", PRINT_ENV, SEED="7")
    )
    done = await finished(backend, "env-job")
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    env = printed(backend, "env-job", "ENV=")
    job_folder = str(backend.work_dir / "env-job")
    assert env.pop("CWD") == job_folder
    assert env["HOME"] == job_folder
    assert env["SEED"] == "7"
    assert env["TRAINING_JOB_NAME"] == "env-job"
    assert env["SM_MODEL_DIR"] == f"{job_folder}/opt/ml/model"
    fixed = {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "TRAINING_JOB_NAME", "SEED"}
    assert {k for k in env if not k.startswith("SM_")} == fixed
    logs = (backend.work_dir / "env-job" / "logs.txt").read_text()
    for value in SECRETS.values():
        assert value not in logs


async def test_the_shipped_script_runs_without_the_services_environment(
    backend: LocalProcessBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_linear (by module name, as the contract tests run it) still trains."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    await backend.create_training_job(request("linear", tmp_path, *shipped_entrypoints()[0]))
    done = await finished(backend, "linear")
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason


async def test_a_disallowed_entrypoint_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    """By default only the shipped training scripts run: `python -c` is InvalidRequest, and
    no job (or folder) is made."""
    default = LocalProcessBackend(tmp_path / "work")
    await default.start()
    try:
        marker = tmp_path / "ran"
        code = f"open({str(marker)!r}, 'w').close()"
        with pytest.raises(InvalidRequest, match="is not an allowed local entrypoint"):
            await default.create_training_job(request("nope", tmp_path, "python", "-c", code))
        with pytest.raises(InvalidRequest, match="is not an allowed local entrypoint"):
            await default.create_training_job(request("sh", tmp_path, "/bin/sh", "-c", "id"))
        with pytest.raises(TrainingJobNotFound):
            await default.describe_training_job("nope")
        assert not (default.work_dir / "nope").exists()
        assert not marker.exists()
    finally:
        await default.close()


async def test_loader_variables_in_the_jobs_environment_are_refused(
    backend: LocalProcessBackend, tmp_path: Path
) -> None:
    """PYTHONPATH or LD_PRELOAD could make an allowed script run staged data as code."""
    body = request("preload", tmp_path, *shipped_entrypoints()[0], LD_PRELOAD="/tmp/x.so")
    with pytest.raises(InvalidRequest, match="LD_PRELOAD"):
        await backend.create_training_job(body)


async def test_the_limits_are_set_in_the_child(tmp_path: Path) -> None:
    """The process starts with the rules' CPU, address-space and open-file limits."""
    limited = LocalProcessBackend(
        tmp_path / "work", rules=rules(cpu_seconds=300, memory_mb=2048, open_files=64)
    )
    await limited.start()
    try:
        await limited.create_training_job(request("limits", tmp_path, "python", "-c", PRINT_LIMITS))
        done = await finished(limited, "limits")
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
        cpu, memory, files = printed(limited, "limits", "LIMITS=")
    finally:
        await limited.close()
    assert cpu == [300, 310]
    assert memory == [2048 * 1024 * 1024] * 2
    assert files == [64, 64]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) != (64, 64)  # the service's own: untouched


async def test_a_process_over_its_memory_limit_fails(tmp_path: Path) -> None:
    limited = LocalProcessBackend(tmp_path / "work", rules=rules(memory_mb=256))
    await limited.start()
    try:
        grab = "x = bytearray(512 * 1024 * 1024)"
        await limited.create_training_job(request("greedy", tmp_path, "python", "-c", grab))
        done = await finished(limited, "greedy")
    finally:
        await limited.close()
    assert done.status is TrainingJobStatus.FAILED
    assert "MemoryError" in (limited.work_dir / "greedy" / "logs.txt").read_text()


async def test_a_process_over_its_cpu_limit_is_stopped(tmp_path: Path) -> None:
    """A busy loop with one CPU second gets SIGXCPU; the failure reason says so."""
    limited = LocalProcessBackend(tmp_path / "work", rules=rules(cpu_seconds=1))
    await limited.start()
    try:
        await limited.create_training_job(
            request("spin", tmp_path, "python", "-c", "while True: pass")
        )
        done = await finished(limited, "spin")
    finally:
        await limited.close()
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == (
        "AlgorithmError: the process used up its CPU time limit (SIGXCPU)"
    )


def test_local_runs_are_off_outside_the_embedded_default(tmp_path: Path) -> None:
    """Kafka and DynamoDB modes launch on SageMaker unless STOKER_TRAINING_BACKEND=local;
    submissions are held to the local rules only where jobs run locally."""
    embedded = Settings(data_dir=tmp_path)
    kafka = Settings(data_dir=tmp_path, mode=Mode.KAFKA)
    asked = Settings(data_dir=tmp_path, mode=Mode.DYNAMODB, training_backend="local")
    assert [s.backend_kind for s in (embedded, kafka, asked)] == ["local", "sagemaker", "local"]
    assert submission_rules(embedded, load_policy(embedded)).local_runs
    assert not submission_rules(kafka, load_policy(kafka)).local_runs


def test_python_means_this_interpreter_in_the_allowlist() -> None:
    """The demo names sys.executable; the allowlist's `python` covers it."""
    script = shipped_entrypoints()[1][1]
    assert (
        LocalRunRules(entrypoints=shipped_entrypoints()).command_refusal([sys.executable, script])
        is None
    )
    assert os.path.isfile(script)
