"""The event contract: schema files equal the Python types, and events validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stoker.app.schema_export import render_schemas
from stoker.core.errors import EventRejected
from stoker.core.events import (
    EVENT_TYPES,
    CloudEvent,
    DeadLetter,
    JobAttemptFailed,
    JobCompleted,
    JobDescribed,
    JobFailed,
    JobRetryScheduled,
    JobStatusChanged,
    JobStopped,
    JobSubmitted,
    NotificationSent,
    decode_event,
)
from stoker.core.job import JobStatus
from stoker.core.pipelines import events as pipeline_events
from stoker.core.spec import JobSpec

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

SPEC = JobSpec(
    job_id="exp-1",
    owner="ana",
    training={
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "RoleArn": "arn:aws:iam::123456789012:role/x",
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    },
)

SAMPLES = [
    JobSubmitted(spec=SPEC),
    JobStatusChanged(
        job_id="exp-1",
        owner="ana",
        version=3,
        from_status=JobStatus.LAUNCHED,
        to_status=JobStatus.IN_PROGRESS,
        attempt=1,
    ),
    JobRetryScheduled(job_id="exp-1", attempt=1, next_attempt_at=T0, reason="CapacityError"),
    JobAttemptFailed(
        job_id="exp-1",
        attempt=1,
        training_job_name="exp-1-a1",
        instance_type="ml.m5.large",
        failure_reason="CapacityError: none left",
        observed_at=T0,
    ),
    JobCompleted(job_id="exp-1", owner="ana", attempts=1, ended_at=T0, billable_seconds=60),
    JobFailed(
        job_id="exp-1", owner="ana", attempts=3, ended_at=T0, failure_reason="AlgorithmError: x"
    ),
    JobStopped(job_id="exp-1", owner="ana", attempts=1, ended_at=T0),
    JobDescribed(
        job_id="exp-1",
        owner="ana",
        status=JobStatus.COMPLETED,
        attempts=1,
        ended_at=T0,
        billable_seconds=60,
        model_artifacts="s3://b/exp-1-1/output/model.tar.gz",
    ),
    NotificationSent(
        job_id="exp-1", channel="slack", terminal_status=JobStatus.COMPLETED, target="#ml"
    ),
    DeadLetter(
        original_topic="t",
        original_partition=0,
        original_offset=5,
        original_key="k",
        original_value="{",
        consumer_group="g",
        error_kind="decode",
        reason="not JSON",
        attempts=0,
        failed_at=T0,
    ),
]

_EXECUTION: dict[str, Any] = {
    "execution_id": "exec1",
    "pipeline_name": "sentiment",
    "team": "search",
}
SAMPLES += [
    pipeline_events.PipelineExecutionStarted(
        **_EXECUTION, started_at=T0, parameters={"Epochs": 3}, schedule="nightly"
    ),
    pipeline_events.PipelineStepReady(**_EXECUTION, step="Train"),
    pipeline_events.PipelineStepStarted(
        **_EXECUTION, step="Train", step_type="Training", attempt=1, job_id="exec1.Train.1"
    ),
    pipeline_events.PipelineStepSucceeded(**_EXECUTION, step="Train", attempt=1),
    pipeline_events.PipelineStepFailed(
        **_EXECUTION,
        step="Train",
        attempt=1,
        reason="CapacityError: none left",
        failure_type="SageMaker.CAPACITY_ERROR",
        retry_at=T0,
    ),
    pipeline_events.PipelineStepSkipped(**_EXECUTION, step="Register", reason="else branch"),
    pipeline_events.PipelineStepStopped(**_EXECUTION, step="Train", attempt=2),
    pipeline_events.PipelineExecutionSucceeded(**_EXECUTION, started_at=T0, ended_at=T0),
    pipeline_events.PipelineExecutionFailed(
        **_EXECUTION, started_at=T0, ended_at=T0, reason="step 'Train' failed: x"
    ),
    pipeline_events.PipelineExecutionStopped(**_EXECUTION, started_at=T0, ended_at=T0),
]


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return doc


def test_schema_files_equal_the_python_types() -> None:
    """schemas/ is exactly what `stoker schemas export` writes from the models."""
    rendered = render_schemas()
    on_disk = {p.name for p in SCHEMA_DIR.glob("*.schema.json")}
    assert set(rendered) <= on_disk
    for name, text in rendered.items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale"


def test_every_event_type_has_a_sample() -> None:
    """The samples below cover the whole registry, so the next test checks every schema."""
    assert {type(s).TYPE for s in SAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("data", SAMPLES, ids=lambda d: type(d).__name__)
def test_serialized_events_validate_against_the_schema_files(data: Any) -> None:
    """Envelope and data of each event validate against draft 2020-12 schemas on disk."""
    event = CloudEvent.wrap(data, time=T0)
    doc = json.loads(event.to_json())
    jsonschema.Draft202012Validator(_load("cloudevent.schema.json")).validate(doc)
    jsonschema.Draft202012Validator(_load(f"{data.SCHEMA_NAME}.schema.json")).validate(doc["data"])
    assert doc["type"].endswith(".v1")
    assert doc["specversion"] == "1.0"
    assert decode_event(event.to_json()) == event


def test_partition_key_is_the_job_id() -> None:
    """Events of one job share a subject so they stay on one partition, in order."""
    assert CloudEvent.wrap(SAMPLES[1], time=T0).subject == "exp-1"


def test_an_event_is_serialised_once_and_a_copy_has_its_own_bytes() -> None:
    """The outbox row and the publish share one serialisation; a changed copy does not
    carry the original's bytes."""
    event = CloudEvent.wrap(SAMPLES[1], time=T0)
    assert event.to_json() is event.to_json()
    copy = event.model_copy(update={"subject": "exp-2"})
    assert json.loads(copy.to_json())["subject"] == "exp-2"
    assert json.loads(event.to_json())["subject"] == "exp-1"
    assert decode_event(event.to_json()) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "decode: not JSON"),
        (b"[1, 2]", "decode: a CloudEvent must be a JSON object"),
        (b'{"type": "x.y.v1"}', "unknown-type: 'x.y.v1'"),
        (
            b'{"type": "stoker.job.attempt-failed.v1", "data": {"job_id": "j", "attempt": 0}}',
            "schema: attempt: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_events_are_rejected_with_the_reason(raw: bytes, reason: str) -> None:
    """Decode errors say what kind of problem it is and which field is wrong."""
    with pytest.raises(EventRejected) as info:
        decode_event(raw)
    assert info.value.reason.startswith(reason)
