"""`stoker endpoints deploy`: the SageMaker requests for a model prefix, printed, and applied
to moto's SageMaker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from stoker.adapters.endpoint_deploy import apply
from stoker.cli.main import app
from stoker.core.errors import ConfigurationError
from stoker.inference.fleet.deployment import EndpointPlan
from stoker.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/stoker-endpoint:latest"
PREFIX = "s3://models-bucket/scaling-thousand-models/models/"


@pytest.fixture(scope="module")
def sagemaker_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_the_requests_name_a_multi_model_container_on_the_prefix() -> None:
    requests = dict(EndpointPlan("customer-models", PREFIX, IMAGE, ROLE).requests())
    container = requests["CreateModel"]["PrimaryContainer"]
    assert container == {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": PREFIX}
    variant = requests["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["ModelName"] == requests["CreateModel"]["ModelName"]
    assert requests["CreateEndpoint"] == {
        "EndpointName": "customer-models",
        "EndpointConfigName": requests["CreateEndpointConfig"]["EndpointConfigName"],
    }


def test_a_prefix_sagemaker_cannot_serve_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        EndpointPlan("m", "/srv/models/", IMAGE, ROLE)
    with pytest.raises(ValueError, match="end with '/'"):
        EndpointPlan("m", "s3://b/models", IMAGE, ROLE)


def test_deploy_prints_the_requests() -> None:
    result = CliRunner().invoke(
        app, ["endpoints", "deploy", "--prefix", PREFIX, "--image", IMAGE, "--role-arn", ROLE]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert list(printed) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    assert printed["CreateModel"]["PrimaryContainer"]["Mode"] == "MultiModel"


def test_apply_creates_the_model_config_and_endpoint(sagemaker_endpoint: str) -> None:
    plan = EndpointPlan("customer-models", PREFIX, IMAGE, ROLE, instance_count=2)
    answers = asyncio.run(apply(plan, Settings(), endpoint_url=sagemaker_endpoint))
    assert [next(k for k in a if k.endswith("Arn")) for a in answers] == [
        "ModelArn",
        "EndpointConfigArn",
        "EndpointArn",
    ]
    sagemaker = boto3.client("sagemaker", region_name="us-east-1", endpoint_url=sagemaker_endpoint)
    model = sagemaker.describe_model(ModelName=plan.model_name)
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == PREFIX
    config = sagemaker.describe_endpoint_config(EndpointConfigName=plan.config_name)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    endpoint = sagemaker.describe_endpoint(EndpointName="customer-models")
    assert endpoint["EndpointConfigName"] == plan.config_name


def test_a_request_botocore_would_refuse_is_a_configuration_error(sagemaker_endpoint: str) -> None:
    plan = EndpointPlan("customer-models", PREFIX, IMAGE, "short")
    with pytest.raises(ConfigurationError, match="CreateModel"):
        asyncio.run(apply(plan, Settings(), endpoint_url=sagemaker_endpoint))
