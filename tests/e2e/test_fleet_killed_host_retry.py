"""A sharded training job whose host is SIGKILLed mid-training, retried by the lifecycle.

The launcher, monitor, retrier and relay run on this test's event loop over the embedded
default (SQLite), with the local backend training in processes. One job of `InstanceCount`
2 fits one Prophet model per customer of a `ShardedByS3Key` channel, checkpoints in S3
(moto's server). Host algo-1 is SIGKILLed in the middle of its second fit: the attempt fails
with `AlgorithmError: algo-1: exit code -9`, which a failure rule of the service's retry
policy retries (as docs/fleet.md documents); the retrier schedules attempt 2, which restores
the checkpoints, fits only the missing models and completes. Every customer's model is
completed exactly once (one marker per completed fit, written by counting_train.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.demo import demo_settings
from stoker.core.job import JobStatus
from stoker.core.naming import training_job_name
from stoker.core.policy import LocalRunRules, Policy
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.ports.training import TrainingJobStatus
from stoker.training_scripts import shipped_entrypoints, train_customers
from tests.e2e.embedded import embedded_services
from tests.support.fleet_s3 import FLEET_BUCKET, moto_s3, s3_client, upload_customers
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.slow]

SCRIPTS = Path(train_customers.__file__).parent
COUNTING = Path(__file__).parents[1] / "unit" / "fleet" / "counting_train.py"
KILLED_REASON = "AlgorithmError: algo-1: exit code -9"
RETRY_KILLED_HOSTS = {
    "reason_pattern": r"AlgorithmError: algo-\d+: exit code -9",
    "action": "retry",
}
"""The failure rule docs/fleet.md gives for a host killed by a signal."""
SERVICES = ("launcher", "monitor", "retrier", "relay")


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 with the bucket made; the credentials also in the environment, for the
    training hosts' clients."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "stoker-local"),
        ("AWS_SECRET_ACCESS_KEY", "stoker-local"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    with moto_s3() as endpoint:
        yield endpoint


def sharded_job(job_id: str, data: Path, markers: Path) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "owner": "ana",
        "training": {
            "AlgorithmSpecification": {
                "TrainingImage": "local",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": [
                    *("python", str(COUNTING), str(SCRIPTS)),
                    *("--uncertainty-samples", "10"),
                ],
            },
            "RoleArn": "arn:aws:iam::000000000000:role/stoker-fleet",
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{FLEET_BUCKET}/retry/data",
                            "S3DataDistributionType": "ShardedByS3Key",
                        }
                    },
                }
            ],
            "CheckpointConfig": {"S3Uri": f"s3://{FLEET_BUCKET}/retry/checkpoints"},
            "OutputDataConfig": {"S3OutputPath": (data / "output").as_uri()},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
            "Environment": {
                "FIT_MARKERS": str(markers),
                "KILL_HOST": "algo-1",
                "KILL_AFTER": "1",
            },
        },
    }


async def test_a_killed_host_is_retried_by_the_lifecycle_and_every_model_is_fitted_once(
    tmp_path: Path, s3_endpoint: str
) -> None:
    customers = upload_customers(s3_endpoint, "retry/data", 6)
    markers = tmp_path / "markers"
    markers.mkdir()
    settings = demo_settings(tmp_path).model_copy(
        update={"failure_rules": [RETRY_KILLED_HOSTS], "retry_max_attempts": 3}
    )
    entrypoints = [*shipped_entrypoints(), ["python", str(COUNTING)]]
    local = LocalRunRules(entrypoints=entrypoints, max_instance_count=2)
    backend = LocalProcessBackend(
        tmp_path / "training", stop_grace_s=5.0, s3_endpoint=s3_endpoint, rules=local
    )
    policy = Policy(local=local)
    async with embedded_services(
        settings, tmp_path, SERVICES, backend=backend, policy=policy
    ) as stack:
        rt = stack.rt
        jobs = JobService(rt.transitioner(), rt.clock, rules=rt.submission_rules())
        await jobs.submit(parse_spec(sharded_job("fleet-retry", tmp_path, markers)))

        async def ended() -> bool:
            stack.check_alive()
            return (await rt.store.get("fleet-retry")).status.terminal

        await poll_until(ended, 300.0, 0.2, what="the end of job fleet-retry")
        job = await rt.store.get("fleet-retry")
        history = await jobs.history("fleet-retry")

    assert job.status is JobStatus.COMPLETED, job.failure_reason
    assert job.attempt == 2
    assert (markers / "killed").exists()
    # The first attempt failed with the killed host's reason, and the rule retried it.
    first = await backend.describe_training_job(training_job_name("fleet-retry", 1))
    assert first.status is TrainingJobStatus.FAILED
    assert first.failure_reason == KILLED_REASON
    assert JobStatus.RETRY_SCHEDULED in [step.to_status for step in history]
    # Every customer's model was completed exactly once over both attempts.
    completed = Counter(marker.name.split(".tar.gz")[0] for marker in markers.glob("*.tar.gz.*"))
    assert completed == dict.fromkeys(customers, 1)
    second = await backend.describe_training_job(training_job_name("fleet-retry", 2))
    assert second.status is TrainingJobStatus.COMPLETED
    saved = s3_client(s3_endpoint).list_objects_v2(Bucket=FLEET_BUCKET, Prefix="retry/checkpoints/")
    saved_models = sorted(obj["Key"].rsplit("/", 1)[1] for obj in saved.get("Contents", []))
    assert saved_models == sorted(f"{c}.tar.gz" for c in customers)
