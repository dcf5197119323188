"""SageMaker "Training Job State Change" events (EventBridge) as a source for the monitor.

When an EventBridge rule forwards these events to the `stoker.sagemaker.state-changes` topic
(as they are: EventBridge's JSON), the monitor learns of a change within milliseconds
instead of at its next ListTrainingJobs pass. Repeats are harmless: a job already in the
reported state is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from stoker.core.errors import EventRejected
from stoker.ports.training import TrainingJobStatus

DETAIL_TYPE = "SageMaker Training Job State Change"


@dataclass(frozen=True, slots=True)
class StateChange:
    training_job_name: str
    status: TrainingJobStatus


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
        return StateChange(name, TrainingJobStatus(str(status)))
    except ValueError as exc:
        raise EventRejected(f"schema: detail.TrainingJobStatus: unknown value {status!r}") from exc
