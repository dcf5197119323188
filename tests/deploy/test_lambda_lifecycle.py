"""The serverless variant end to end, one handler call at a time, as AWS would call them:
the jobs API writes to the job table on DynamoDB Local; each stream batch is read from
DynamoDB Local's stream and filtered with the template's own filter patterns; SageMaker's
state changes arrive as EventBridge event samples; SageMaker, SNS and SQS are moto.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from stoker.app.aws_lambda import launch, monitor, react, submit
from stoker.app.aws_lambda.host import LambdaHost
from stoker.core import topics
from stoker.core.events import CloudEvent, JobAttemptFailed
from stoker.notifier.config import NotifySettings
from tests.deploy.functions import LambdaFunctions
from tests.deploy.support import (
    StreamReader,
    answer,
    http_event,
    scheduled,
    state_change,
    training_request,
)

pytestmark = pytest.mark.integration

ALICE = {"sub": "alice"}


class Stack(LambdaFunctions):
    """The functions, with the API's answers read back."""

    def submit(self, job_id: str, **extra: Any) -> dict[str, Any]:
        body = {"job_id": job_id, "training": training_request(job_id), **extra}
        status, answered = answer(
            submit.handle(self.api, http_event("POST /v1/jobs", body=body, claims=ALICE), None)
        )
        assert status == 201, answered
        job: dict[str, Any] = answered["job"]
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        event = http_event("GET /v1/jobs/{job_id}", job_id=job_id, claims=ALICE)
        status, job = answer(submit.handle(self.api, event, None))
        assert status == 200, job
        return dict(job)


@pytest.fixture
def aws(hosts: Callable[..., LambdaHost], notify: NotifySettings) -> Stack:
    return Stack(hosts, notify)


def inbox(sqs_url: str, moto_endpoint: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    answer_ = sqs.receive_message(
        QueueUrl=sqs_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(answer_.get("Messages", []))


def test_a_job_goes_from_submit_to_completed_and_its_owner_gets_one_email(
    aws: Stack,
    stream: Callable[[], StreamReader],
    sagemaker: Any,
    sns_topic: dict[str, str],
    moto_endpoint: str,
) -> None:
    """Submit (API) -> New on the stream -> launcher creates the training job -> EventBridge
    InProgress and Completed events -> monitor records them -> JobCompleted on the stream ->
    notifier publishes one email to SNS, and a redelivered batch sends nothing more."""
    aws.submit("flow-1", notify=[{"kind": "email", "address": "alice@example.com"}])
    reader = stream()

    launched, reacted = aws.deliver(reader)
    assert launched == {"batchItemFailures": []}
    assert reacted == {"batchItemFailures": []}
    job = aws.job("flow-1")
    assert (job["status"], job["attempt"]) == ("Launched", 1)
    name = job["details"]["training_job_name"]
    assert name == "flow-1-1"
    described = sagemaker.describe_training_job(TrainingJobName=name)
    assert described["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    tags = sagemaker.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert {"Key": "stoker:job-id", "Value": "flow-1"} in tags

    applied = monitor.handle(aws.monitor, state_change(name, "InProgress", "flow-1"), None)
    assert applied == {"applied": 1}
    assert aws.job("flow-1")["status"] == "InProgress"
    # EventBridge may deliver an event twice: the repeat changes nothing.
    assert monitor.handle(aws.monitor, state_change(name, "InProgress", "flow-1"), None) == {
        "applied": 0
    }

    assert monitor.handle(aws.monitor, state_change(name, "Completed", "flow-1"), None) == {
        "applied": 1
    }
    done = aws.job("flow-1")
    assert done["status"] == "Completed"
    assert done["details"]["model_artifacts"]

    records = reader.new_records()
    assert reader.batch_for("LaunchFunction", records)["Records"], "lifecycle events"
    react_batch = reader.batch_for("ReactFunction", records)
    assert any(
        r["dynamodb"]["NewImage"]["topic"]["S"] == topics.COMPLETED for r in react_batch["Records"]
    )
    assert react.handle(aws.react, react_batch, None, notify=aws.notify) == {
        "batchItemFailures": []
    }
    messages = inbox(sns_topic["queue_url"], moto_endpoint)
    assert len(messages) == 1
    assert "flow-1" in messages[0]["Body"]
    assert messages[0]["MessageAttributes"]["recipient"]["StringValue"] == "alice@example.com"

    # Lambda redelivers a batch after a timeout: one job, one message.
    assert react.handle(aws.react, react_batch, None, notify=aws.notify) == {
        "batchItemFailures": []
    }
    assert inbox(sns_topic["queue_url"], moto_endpoint) == []


def test_a_failed_attempt_is_retried_by_the_retrier_and_the_launch_sweep(
    aws: Stack, stream: Callable[[], StreamReader], sagemaker: Any
) -> None:
    """The monitor's report of a failed attempt reaches the retrier through the stream; the
    retry comes due and the launcher's sweep starts attempt 2 under its own name.

    moto's training jobs always complete, so the report the monitor publishes for a Failed
    training job is published here the same way (an event item on the lifecycle topic)."""
    aws.submit("retry-1")
    reader = stream()
    aws.deliver(reader)
    job = aws.job("retry-1")
    assert job["status"] == "Launched"

    failed = JobAttemptFailed(
        job_id="retry-1",
        attempt=1,
        training_job_name="retry-1-1",
        instance_type="ml.m5.large",
        failure_reason="CapacityError: Unable to provision requested ML compute capacity.",
        failure_code="CapacityError",
        observed_at=datetime.now(UTC),
    )
    event = CloudEvent.wrap(failed, time=failed.observed_at)
    aws.monitor.run(lambda rt: rt.bus.publish(topics.LIFECYCLE, event))

    launched, reacted = aws.deliver(reader)
    assert (launched, reacted) == ({"batchItemFailures": []}, {"batchItemFailures": []})
    waiting = aws.job("retry-1")
    assert waiting["status"] == "RetryScheduled"

    swept = launch.handle(aws.launch, scheduled(), None)
    assert "marked" in swept
    again = aws.job("retry-1")
    assert (again["status"], again["attempt"]) == ("Launched", 2)
    assert again["details"]["training_job_name"] == "retry-1-2"
    assert sagemaker.describe_training_job(TrainingJobName="retry-1-2")["TrainingJobName"]


def test_the_monitor_sweep_finds_an_end_no_event_reported(
    aws: Stack, stream: Callable[[], StreamReader]
) -> None:
    """No EventBridge event came (lost, or the rule was off): the scheduled sweep lists the
    training jobs that changed and records the end."""
    aws.submit("sweep-1")
    aws.deliver(stream())
    assert aws.job("sweep-1")["status"] == "Launched"

    swept = monitor.handle(aws.monitor, scheduled(), None)
    assert swept["followed"] == 0  # the job ended during the pass
    assert swept["applied"] == 1
    assert aws.job("sweep-1")["status"] == "Completed"


def test_events_of_other_training_jobs_are_ignored(aws: Stack) -> None:
    """The rule forwards every training job's state changes; only stoker's are applied."""
    assert monitor.handle(aws.monitor, state_change("someone-elses--job", "Completed"), None) == {
        "applied": 0
    }
    assert monitor.handle(aws.monitor, state_change("nojob-7", "Completed"), None) == {"applied": 0}


def test_a_record_that_is_not_an_event_is_dead_lettered_and_the_batch_goes_on(
    aws: Stack, stream: Callable[[], StreamReader]
) -> None:
    """A garbled lifecycle record goes to stoker.deadletter (an event item the stream
    carries) with the reason; the good job in the same batch is launched."""
    aws.launch.run(lambda rt: rt.bus.publish_raw(topics.LIFECYCLE, "broken", b"{not json"))
    aws.submit("after-garbage")
    reader = stream()
    launched, _ = aws.deliver(reader)
    assert launched == {"batchItemFailures": []}
    assert aws.job("after-garbage")["status"] == "Launched"

    letters = [
        r
        for r in reader.new_records()
        if r["dynamodb"].get("NewImage", {}).get("topic", {}).get("S") == topics.DEAD_LETTER
    ]
    assert letters

    letter = json.loads(base64.b64decode(letters[0]["dynamodb"]["NewImage"]["value"]["B"]))
    assert letter["data"]["original_key"] == "broken"
    assert letter["data"]["error_kind"] == "decode"


class ShortInvocation:
    """A Lambda context with little time left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


def test_a_notification_that_could_not_be_sent_is_sent_by_the_sweep(
    aws: Stack,
    stream: Callable[[], StreamReader],
    sns_topic: dict[str, str],
    moto_endpoint: str,
) -> None:
    """SNS is unreachable when the job ends and the invocation runs out of time: the ledger
    keeps the message owed, and the notifier's scheduled sweep sends it, once."""
    aws.submit("late-1", notify=[{"kind": "email", "address": "alice@example.com"}])
    reader = stream()
    aws.deliver(reader)
    monitor.handle(aws.monitor, state_change("late-1-1", "Completed", "late-1"), None)
    assert aws.job("late-1")["status"] == "Completed"

    unreachable = aws.notify.model_copy(update={"sns_endpoint": "http://127.0.0.1:9"})
    batch = reader.batch_for("ReactFunction", reader.new_records())
    answered = react.handle(aws.react, batch, ShortInvocation(2.0), notify=unreachable)
    assert answered == {"batchItemFailures": []}  # the obligation is recorded
    assert inbox(sns_topic["queue_url"], moto_endpoint) == []

    assert react.handle(aws.react, scheduled(), None, notify=aws.notify) == {
        "sent": 1,
        "failed": 0,
    }
    messages = inbox(sns_topic["queue_url"], moto_endpoint)
    assert len(messages) == 1
    assert "late-1" in messages[0]["Body"]
