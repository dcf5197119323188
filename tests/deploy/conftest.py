"""Fixtures for the Lambda handler tests: DynamoDB Local (the job table and its stream, real),
moto playing SageMaker, SNS and SQS, and Lambda hosts configured for both.

The handlers run their own event loop, as they do in Lambda, so these tests are plain
(synchronous) functions; AWS clients in them are boto3's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stoker.adapters.store import layout
from stoker.adapters.store.pipeline_layout import pipeline_table_name
from stoker.app.aws_lambda.host import LambdaHost, LambdaSettings
from stoker.notifier.config import NotifySettings
from stoker.settings import Mode, Settings
from tests.deploy.support import StreamReader

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port: SageMaker, SNS and SQS."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def prefix(dynamodb_endpoint: str) -> Iterator[str]:
    """A table prefix of the test's own; its tables are deleted afterwards."""
    name = f"deploy-{uuid.uuid4().hex[:10]}"
    yield name
    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=dynamodb_endpoint)
    for table in (
        layout.job_table_name(name),
        layout.checkpoint_table_name(name),
        f"{name}-notifications",
        pipeline_table_name(name),
    ):
        with contextlib.suppress(db.exceptions.ResourceNotFoundException):
            db.delete_table(TableName=table)


@pytest.fixture
def settings(dynamodb_endpoint: str, moto_endpoint: str, prefix: str) -> Settings:
    """The settings the template gives the functions, pointed at the local servers; retries
    fall due at once so a test can launch the next attempt without waiting."""
    return Settings(
        mode=Mode.DYNAMODB,
        dynamodb_endpoint=dynamodb_endpoint,
        dynamodb_table_prefix=prefix,
        aws_region=REGION,
        training_backend="sagemaker",
        sagemaker_endpoint=moto_endpoint,
        retry_initial_delay_s=0,
        retry_jitter=0,
        log_json=True,
    )


@pytest.fixture
def hosts(settings: Settings) -> Iterator[Callable[..., LambdaHost]]:
    """Makes Lambda hosts (one per function, as in AWS) and closes them after the test."""
    made: list[LambdaHost] = []

    def make(*, with_backend: bool = True, **overrides: Any) -> LambdaHost:
        host = LambdaHost(
            settings.model_copy(update=overrides) if overrides else settings,
            with_backend=with_backend,
            lambda_settings=LambdaSettings(deadline_margin_s=0),
        )
        made.append(host)
        return host

    yield make
    for host in made:
        host.close()


@pytest.fixture
def sns_topic(moto_endpoint: str) -> dict[str, str]:
    """An SNS topic with an SQS queue subscribed for one recipient, as an operator would
    subscribe an email address with a filter policy (SQS stands in for the mailbox)."""
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"stoker-notifications-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "FilterPolicy": '{"recipient": ["alice@example.com"]}',
            "RawMessageDelivery": "true",
        },
    )
    return {"topic_arn": topic, "queue_url": queue_url}


@pytest.fixture
def notify(moto_endpoint: str, sns_topic: dict[str, str], prefix: str) -> NotifySettings:
    """The notifier's settings as the template sets them: SNS email, DynamoDB ledger, no
    digest window."""
    return NotifySettings(
        sns_topic_arn=sns_topic["topic_arn"],
        sns_endpoint=moto_endpoint,
        ledger="dynamodb",
        ledger_table=f"{prefix}-notifications",
        digest_window_s=0,
        fallback="none",
    )


@pytest.fixture
def stream(dynamodb_endpoint: str, prefix: str) -> Callable[[], StreamReader]:
    """A reader of the job table's stream (call it once the table exists)."""

    def open_reader() -> StreamReader:
        db = boto3.client("dynamodb", region_name=REGION, endpoint_url=dynamodb_endpoint)
        arn = db.describe_table(TableName=layout.job_table_name(prefix))["Table"]["LatestStreamArn"]
        streams = boto3.client(
            "dynamodbstreams", region_name=REGION, endpoint_url=dynamodb_endpoint
        )
        return StreamReader(streams, arn)

    return open_reader


@pytest.fixture
def sagemaker(moto_endpoint: str) -> Any:
    return boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_endpoint)
