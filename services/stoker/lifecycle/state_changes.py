"""SageMaker "Training Job State Change" events (EventBridge) as a source for the monitor.

When an EventBridge rule forwards these events to the `stoker.sagemaker.state-changes` topic
(as they are: EventBridge's JSON), the monitor learns of a change within milliseconds
instead of at its next ListTrainingJobs pass. The event's `detail` is the job's description
(what DescribeTrainingJob answers, times in epoch milliseconds), so an end it reports is
recorded with its failure reason, billable time and model artifacts and no API call. Repeats
are harmless: a job already in the reported state is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from stoker.core.errors import EventRejected
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus

DETAIL_TYPE = "SageMaker Training Job State Change"
SOURCE = "aws.sagemaker"

_MILLIS_AFTER = 100_000_000_000
"""An epoch number above this is in milliseconds (seconds reach it in the year 5138)."""


@dataclass(frozen=True, slots=True)
class StateChange:
    training_job_name: str
    status: TrainingJobStatus
    description: TrainingJobDescription | None = None
    """The job as the event describes it; None when the detail lacks the fields of one."""


def decode_state_change(raw: bytes) -> StateChange:
    """Parse one EventBridge event; EventRejected (dead-lettered) for anything else."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(f"decode: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("detail-type") != DETAIL_TYPE:
        raise EventRejected(f"unknown-type: expected detail-type {DETAIL_TYPE!r}")
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        raise EventRejected("schema: detail: an object is required")
    name = detail.get("TrainingJobName")
    status = detail.get("TrainingJobStatus")
    if not isinstance(name, str) or not name:
        raise EventRejected("schema: detail.TrainingJobName: a non-empty string is required")
    try:
        parsed = TrainingJobStatus(str(status))
    except ValueError as exc:
        raise EventRejected(f"schema: detail.TrainingJobStatus: unknown value {status!r}") from exc
    return StateChange(name, parsed, description_of(detail, parsed))


def description_of(
    detail: Mapping[str, Any], status: TrainingJobStatus
) -> TrainingJobDescription | None:
    """The description in an event's detail, or None when it lacks the ARN or the times a
    description always has, or a completed job's model artifacts (a forwarder that trimmed
    the event): then the monitor asks DescribeTrainingJob."""
    arn = detail.get("TrainingJobArn")
    created = _time(detail.get("CreationTime"))
    modified = _time(detail.get("LastModifiedTime")) or created
    if not isinstance(arn, str) or created is None or modified is None:
        return None
    artifacts = detail.get("ModelArtifacts")
    if status is TrainingJobStatus.COMPLETED and not isinstance(artifacts, dict):
        return None
    resources = detail.get("ResourceConfig")
    return TrainingJobDescription(
        name=str(detail["TrainingJobName"]),
        arn=arn,
        status=status,
        secondary_status=_text(detail.get("SecondaryStatus")),
        failure_reason=_text(detail.get("FailureReason")),
        creation_time=created,
        last_modified_time=modified,
        training_start_time=_time(detail.get("TrainingStartTime")),
        training_end_time=_time(detail.get("TrainingEndTime")),
        billable_seconds=_seconds(detail.get("BillableTimeInSeconds")),
        training_seconds=_seconds(detail.get("TrainingTimeInSeconds")),
        model_artifacts=_text(artifacts.get("S3ModelArtifacts"))
        if isinstance(artifacts, dict)
        else None,
        instance_type=_text(resources.get("InstanceType")) if isinstance(resources, dict) else None,
    )


def _time(value: object) -> datetime | None:
    """EventBridge writes SageMaker's times as epoch milliseconds; ISO text is taken too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MILLIS_AFTER else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _seconds(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
