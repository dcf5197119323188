"""boto3's own `sagemaker-runtime` client against `stoker endpoints serve`'s app, over real
HTTP: real Prophet models in S3 (moto's server), the runtime InvokeEndpoint wire protocol with
TargetModel, a bearer token sent through the client's event hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from stoker.adapters.objects.s3 import S3Store
from stoker.app.auth import Authentication
from stoker.app.endpoint import build_endpoint
from stoker.client import send_bearer_token
from stoker.inference.fleet import FleetConfig
from stoker.training_scripts import energy_data, forecast_model
from tests.unit.auth.fakes import TableAuthenticator
from tests.unit.fleet.serving import served

pytestmark = pytest.mark.slow

BUCKET = "fleet-models"
PREFIX = f"s3://{BUCKET}/scaling-thousand-models/models/"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def artifacts() -> dict[str, bytes]:
    """Two customers' real Prophet models, fitted on the synthetic energy data."""
    frame = energy_data.generate(
        customers=2,
        rows_per_customer=150,
        start=datetime(2021, 1, 1),
        end=datetime(2023, 1, 1),
        seed=3,
    )
    return {
        f"{c}.tar.gz": forecast_model.artifact_bytes(
            forecast_model.fit(frame[frame.customer_id == c], uncertainty_samples=100)
        )
        for c in (0, 1)
    }


@pytest.fixture(scope="module")
def s3_endpoint(artifacts: dict[str, bytes]) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(
        Bucket=BUCKET, Key="scaling-thousand-models/models/17.tar.gz", Body=artifacts["0.tar.gz"]
    )
    yield url
    server.stop()


@pytest.fixture(scope="module")
def endpoint(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = FleetConfig(cache_dir=tmp_path_factory.mktemp("cache"), workers=1)
    app = build_endpoint(
        S3Store(PREFIX, region=REGION, endpoint_url=s3_endpoint),
        config,
        endpoint_name="customer-models",
        auth=Authentication(TableAuthenticator()),
    )
    with served(app) as url:
        yield url


def runtime(endpoint: str, token: str | None = "ana-secret") -> object:
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
    )
    if token is not None:
        send_bearer_token(client, token)
    return client


def invoke(client: object, target: str, body: str = '{"period": 7}') -> dict[str, object]:
    reply = client.invoke_endpoint(  # type: ignore[attr-defined]
        EndpointName="customer-models",
        TargetModel=target,
        ContentType="application/json",
        Body=body,
    )
    loaded: dict[str, object] = json.loads(reply["Body"].read())
    return loaded


def test_boto3_invoke_endpoint_with_target_model_returns_the_forecast(endpoint: str) -> None:
    """The seed's call: `{"period": 7}` to `17.tar.gz` is seven daily forecasts."""
    answer = invoke(runtime(endpoint), "17.tar.gz")
    forecast = answer["forecast"]
    assert isinstance(forecast, list)
    assert len(forecast) == 7
    for row in forecast:
        assert row["yhat_lower"] <= row["yhat"] <= row["yhat_upper"]
        datetime.fromisoformat(row["ds"])


def test_a_model_written_after_start_is_served(
    endpoint: str, s3_endpoint: str, artifacts: dict[str, bytes]
) -> None:
    """No redeploy, no restart: the next call to a new key loads it."""
    client = runtime(endpoint)
    with pytest.raises(ClientError) as missing:
        invoke(client, "42.tar.gz")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "42.tar.gz" in missing.value.response["Error"]["Message"]
    assert missing.value.response["Error"]["Code"] == "ValidationError"
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=s3_endpoint)
    s3.put_object(
        Bucket=BUCKET, Key="scaling-thousand-models/models/42.tar.gz", Body=artifacts["1.tar.gz"]
    )
    assert len(invoke(client, "42.tar.gz", '{"period": 3}')["forecast"]) == 3  # type: ignore[arg-type]


def test_a_corrupt_artifact_is_a_model_error_and_others_keep_serving(
    endpoint: str, s3_endpoint: str
) -> None:
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=s3_endpoint)
    s3.put_object(Bucket=BUCKET, Key="scaling-thousand-models/models/bad.tar.gz", Body=b"\x00" * 64)
    client = runtime(endpoint)
    with pytest.raises(ClientError) as failed:
        invoke(client, "bad.tar.gz")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert failed.value.response["Error"]["Code"] == "ModelError"
    assert "bad.tar.gz" in failed.value.response["Error"]["Message"]
    assert len(invoke(client, "17.tar.gz")["forecast"]) == 7  # type: ignore[arg-type]


def test_a_bad_body_is_400_naming_the_field(endpoint: str) -> None:
    with pytest.raises(ClientError) as refused:
        invoke(runtime(endpoint), "17.tar.gz", '{"period": 0}')
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "period" in refused.value.response["Error"]["Message"]


def test_without_a_token_the_call_is_refused(endpoint: str) -> None:
    """A client that sends only AWS's signature (or nothing) gets 401."""
    with pytest.raises(ClientError) as refused:
        invoke(runtime(endpoint, token=None), "17.tar.gz")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    signed = boto3.client("sagemaker-runtime", endpoint_url=endpoint, region_name=REGION)
    with pytest.raises(ClientError) as unsigned:
        invoke(signed, "17.tar.gz")
    assert unsigned.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    with pytest.raises(ClientError):
        invoke(runtime(endpoint, token="guess"), "17.tar.gz")


def test_s3_store_lists_and_fetches(s3_endpoint: str, tmp_path: Path) -> None:
    async def check() -> None:
        store = S3Store(PREFIX, region=REGION, endpoint_url=s3_endpoint)
        try:
            assert "17.tar.gz" in await store.keys()
            size = await store.fetch("17.tar.gz", tmp_path / "m.tar.gz")
            assert size == (tmp_path / "m.tar.gz").stat().st_size > 0
            assert store.url_of("17.tar.gz") == PREFIX + "17.tar.gz"
        finally:
            await store.close()

    asyncio.run(check())
