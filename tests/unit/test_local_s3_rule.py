"""The policy's `local.s3` rule: local processes reach the dev S3 server named by the rule,
with its non-secret credentials, and never with the service's own AWS keys; without the
rule they get no S3 endpoint or credentials at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.errors import ConfigurationError
from stoker.core.local_s3 import LocalS3
from stoker.core.policy import LocalRunRules, parse_policy
from stoker.ports.training import TrainingJobStatus
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until
from tests.unit.test_local_runs import PRINT_ENV, SECRETS, printed, request

ENDPOINT = "http://127.0.0.1:9000"


async def env_of_a_job(tmp_path: Path, rules: LocalRunRules, **environment: str) -> dict[str, str]:
    backend = LocalProcessBackend(tmp_path / "work", stop_grace_s=5.0, rules=rules)
    await backend.start()
    try:
        await backend.create_training_job(
            request("env-job", tmp_path, "python", "-c", PRINT_ENV, **environment)
        )

        async def ended() -> bool:
            return (await backend.describe_training_job("env-job")).status.terminal

        await poll_until(ended, 30.0, interval_s=0.05)
        done = await backend.describe_training_job("env-job")
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
        env: dict[str, str] = printed(backend, "env-job", "ENV=")
        return env
    finally:
        await backend.close()


def rules(s3: LocalS3 | None) -> LocalRunRules:
    return LocalRunRules(entrypoints=[*shipped_entrypoints(), ["python", "-c"]], s3=s3)


async def test_with_the_rule_a_job_gets_the_dev_servers_endpoint_and_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    env = await env_of_a_job(
        tmp_path,
        rules(LocalS3(endpoint_url=ENDPOINT + "/")),
        AWS_ENDPOINT_URL_S3="http://elsewhere.example",  # the rule's endpoint wins
    )
    assert env["AWS_ENDPOINT_URL_S3"] == ENDPOINT
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_SESSION_TOKEN" not in env
    assert not set(SECRETS.values()) & set(env.values())


async def test_without_the_rule_a_job_gets_no_s3_endpoint_or_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", ENDPOINT)
    env = await env_of_a_job(tmp_path, rules(None))
    assert not [name for name in env if name.startswith("AWS_")]


@pytest.mark.parametrize(
    "endpoint", ["http://10.0.0.5:9000", "https://s3.amazonaws.com", "ftp://127.0.0.1/", "x"]
)
def test_only_a_dev_server_on_loopback_may_be_named(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match=r"local\.s3\.endpoint_url"):
        parse_policy({"local": {"s3": {"endpoint_url": endpoint}}}, "policy.yaml")


def test_loopback_names_are_accepted() -> None:
    for endpoint in ("http://localhost:9000", "http://[::1]:9000", "http://127.0.0.2:1"):
        policy = parse_policy({"local": {"s3": {"endpoint_url": endpoint}}}, "policy.yaml")
        assert policy.local.s3_environment()["AWS_ENDPOINT_URL_S3"] == endpoint
    assert json.dumps(parse_policy({}, "p").local.s3_environment()) == "{}"
