"""SageMaker API calls are counted by operation and outcome, throttles apart too: the
unmodified aiobotocore client against the SageMaker-API simulator over HTTP."""

from __future__ import annotations

import uuid

import pytest

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.ports.training import Throttled
from stoker.simulator import DurationSpec, FaultConfig, SimulatorServer
from stoker.telemetry.metrics import REGISTRY


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: the simulator does not check signatures, botocore needs some."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stokerlocal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stokerlocal")


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_by_outcome_and_throttles() -> None:
    """A create and a describe succeed; the next describe, over the operation's rate, is
    throttled: counted as a call with outcome Throttled and as a throttle."""
    faults = FaultConfig(
        duration=DurationSpec(kind="instant"),
        throttle_rps_by_operation={"DescribeTrainingJob": 0.001},
        throttle_burst=1,
    )
    created = count("stoker_sagemaker_calls_total", operation="CreateTrainingJob", outcome="ok")
    described = count("stoker_sagemaker_calls_total", operation="DescribeTrainingJob", outcome="ok")
    refused = count(
        "stoker_sagemaker_calls_total", operation="DescribeTrainingJob", outcome="Throttled"
    )
    throttles = count("stoker_sagemaker_throttles_total", operation="DescribeTrainingJob")
    name = f"calls-{uuid.uuid4().hex[:8]}"
    async with SimulatorServer(faults) as server:
        backend = SageMakerBackend(endpoint_url=server.url)
        await backend.start()
        try:
            await backend.create_training_job(
                {
                    "TrainingJobName": name,
                    "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
                    "AlgorithmSpecification": {
                        "TrainingImage": "img:1",
                        "TrainingInputMode": "File",
                    },
                    "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
                    "ResourceConfig": {
                        "InstanceType": "ml.m5.large",
                        "InstanceCount": 1,
                        "VolumeSizeInGB": 5,
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                }
            )
            await backend.describe_training_job(name)
            with pytest.raises(Throttled):
                await backend.describe_training_job(name)
        finally:
            await backend.close()
    ok = "ok"
    assert count("stoker_sagemaker_calls_total", operation="CreateTrainingJob", outcome=ok) == (
        created + 1
    )
    assert count("stoker_sagemaker_calls_total", operation="DescribeTrainingJob", outcome=ok) == (
        described + 1
    )
    assert count(
        "stoker_sagemaker_calls_total", operation="DescribeTrainingJob", outcome="Throttled"
    ) == (refused + 1)
    assert count("stoker_sagemaker_throttles_total", operation="DescribeTrainingJob") == (
        throttles + 1
    )
