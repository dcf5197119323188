"""EventBridge's "SageMaker Training Job State Change" events, as the monitor reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stoker.core.errors import EventRejected
from stoker.lifecycle.state_changes import decode_state_change
from stoker.ports.training import TrainingJobStatus

CREATED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def event(**detail: object) -> bytes:
    body = {
        "TrainingJobName": "exp-7-1",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/exp-7-1",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "CreationTime": CREATED_MS,
        "LastModifiedTime": CREATED_MS + 660_000,
        "TrainingStartTime": CREATED_MS + 60_000,
        "TrainingEndTime": CREATED_MS + 660_000,
        "BillableTimeInSeconds": 600,
        "TrainingTimeInSeconds": 600,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/out/exp-7-1/output/model.tar.gz"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Tags": {"stoker:job-id": "exp-7"},
        **detail,
    }
    return orjson.dumps(
        {
            "version": "0",
            "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker",
            "detail": {k: v for k, v in body.items() if v is not None},
        }
    )


def test_an_end_carries_its_whole_description() -> None:
    """Times in epoch milliseconds become UTC datetimes; billable time, artifacts and the
    instance type come along."""
    change = decode_state_change(event())
    assert (change.training_job_name, change.status) == ("exp-7-1", TrainingJobStatus.COMPLETED)
    d = change.description
    assert d is not None
    assert d.training_end_time == datetime(2026, 1, 1, 0, 11, tzinfo=UTC)
    assert d.training_start_time == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert (d.billable_seconds, d.training_seconds) == (600, 600)
    assert d.model_artifacts == "s3://b/out/exp-7-1/output/model.tar.gz"
    assert d.instance_type == "ml.m5.large"


def test_a_failure_carries_its_reason() -> None:
    change = decode_state_change(
        event(TrainingJobStatus="Failed", FailureReason="AlgorithmError: oom", ModelArtifacts=None)
    )
    assert change.description is not None
    assert change.description.failure_reason == "AlgorithmError: oom"
    assert change.description.model_artifacts is None


def test_iso_times_are_read_too() -> None:
    change = decode_state_change(
        event(CreationTime="2026-01-01T00:00:00Z", LastModifiedTime="2026-01-01T00:11:00Z")
    )
    assert change.description is not None
    assert change.description.last_modified_time == datetime(2026, 1, 1, 0, 11, tzinfo=UTC)


def test_a_trimmed_event_gives_the_status_without_a_description() -> None:
    """A forwarder that kept only name and status: the monitor will describe the job."""
    change = decode_state_change(event(TrainingJobArn=None, CreationTime=None))
    assert change.status is TrainingJobStatus.COMPLETED
    assert change.description is None


def test_an_unknown_status_is_rejected_naming_the_field() -> None:
    with pytest.raises(EventRejected, match=r"detail\.TrainingJobStatus"):
        decode_state_change(event(TrainingJobStatus="Exploded"))


def test_a_completion_without_its_model_artifacts_is_described_by_the_monitor() -> None:
    """DescribeTrainingJob always answers ModelArtifacts: an end without them was trimmed, and
    the job's record must not end without its model's location."""
    change = decode_state_change(event(ModelArtifacts=None))
    assert change.status is TrainingJobStatus.COMPLETED
    assert change.description is None
