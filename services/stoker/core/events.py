"""The event contract: CloudEvents 1.0 structured JSON envelopes around typed data.

Free-text reasons are redacted (stoker.core.redaction) when an event is built and when it
is read, so a failure message that quotes a credential never travels.

The version is part of the type (`stoker.job.submitted.v1`). Files in `schemas/` are
generated from these models (`stoker schemas export`) and a test keeps them equal.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from stoker.core import event_data
from stoker.core.auth import DEFAULT_TEAM, TEAM_PATTERN
from stoker.core.errors import EventRejected
from stoker.core.job import JobStatus
from stoker.core.job_kind import JobKind
from stoker.core.pipelines.events import PIPELINE_EVENT_TYPES
from stoker.core.redaction import RedactedText
from stoker.core.spec import JobSpec
from stoker.core.tracecontext import TRACEPARENT_PATTERN, current_traceparent

SOURCE = "urn:stoker"

EventData = event_data.EventData
"""Re-exported: the base of every payload, imported from here by every area."""


class JobSubmitted(EventData):
    """A submission from any client of the bus. The bus is an operators' channel: whoever
    may write the topic names the owner (required here) and the team."""

    TYPE = "stoker.job.submitted.v1"
    SCHEMA_NAME = "job-submitted"
    spec: JobSpec
    team: str = Field(
        default=DEFAULT_TEAM, pattern=TEAM_PATTERN, description="the team the job belongs to"
    )

    @model_validator(mode="after")
    def _names_its_owner(self) -> JobSubmitted:
        if self.spec.owner is None:
            raise ValueError("spec.owner is required on the submissions topic")
        return self

    def partition_key(self) -> str:
        # A submission without an id is keyed by owner; the API assigns an id before storing.
        return self.spec.job_id or f"owner:{self.spec.owner}"


class JobStatusChanged(EventData):
    TYPE = "stoker.job.status-changed.v1"
    SCHEMA_NAME = "job-status-changed"
    job_id: str
    owner: str
    version: int = Field(ge=1)
    from_status: JobStatus | None
    to_status: JobStatus
    attempt: int = Field(ge=0)
    reason: RedactedText | None = None
    kind: JobKind | None = Field(
        default=None,
        # Left out for training jobs, so their events read as before kinds existed.
        exclude_if=lambda kind: kind is None,
        description="processing for a job of kind processing (its attempts are processing "
        "jobs); absent for a training job",
    )


class JobRetryScheduled(EventData):
    TYPE = "stoker.job.retry-scheduled.v1"
    SCHEMA_NAME = "job-retry-scheduled"
    job_id: str
    attempt: int = Field(ge=1, description="the attempt that failed")
    next_attempt_at: datetime
    reason: RedactedText
    failure_code: str | None = None


class JobAttemptFailed(EventData):
    """A training attempt ended Failed; the retrier decides between a retry and the end."""

    TYPE = "stoker.job.attempt-failed.v1"
    SCHEMA_NAME = "job-attempt-failed"
    job_id: str
    attempt: int = Field(ge=1)
    training_job_name: str
    instance_type: str
    failure_reason: RedactedText
    failure_code: str | None = None
    observed_at: datetime


class _Terminal(EventData):
    job_id: str
    owner: str
    attempts: int = Field(ge=0)
    training_job_name: str | None = None
    started_at: datetime | None = None
    ended_at: datetime
    billable_seconds: int | None = Field(default=None, ge=0)
    details_pending: bool = Field(
        default=False,
        description="the end was recorded before the backend described the job: billable "
        "time and model artifacts follow in a stoker.job.described.v1 event on this topic",
    )


class JobCompleted(_Terminal):
    TYPE = "stoker.job.completed.v1"
    SCHEMA_NAME = "job-completed"
    model_artifacts: str | None = None


class JobFailed(_Terminal):
    TYPE = "stoker.job.failed.v1"
    SCHEMA_NAME = "job-failed"
    failure_reason: RedactedText
    failure_code: str | None = None


class JobStopped(_Terminal):
    TYPE = "stoker.job.stopped.v1"
    SCHEMA_NAME = "job-stopped"
    reason: RedactedText | None = None


class JobDescribed(EventData):
    """What the training backend reports about a job that ended, published after its
    terminal event (on the same topic, with the same key) when that event went out before
    the backend's description (`details_pending`)."""

    TYPE = "stoker.job.described.v1"
    SCHEMA_NAME = "job-described"
    job_id: str
    owner: str
    status: JobStatus = Field(description="the job's terminal status")
    attempts: int = Field(ge=0)
    training_job_name: str | None = None
    started_at: datetime | None = None
    ended_at: datetime
    billable_seconds: int | None = Field(default=None, ge=0)
    training_seconds: int | None = Field(default=None, ge=0)
    model_artifacts: str | None = None


class NotificationSent(EventData):
    TYPE = "stoker.notification.sent.v1"
    SCHEMA_NAME = "notification-sent"
    job_id: str
    channel: Literal["slack", "email", "webhook", "console", "file"]
    terminal_status: JobStatus
    target: str = Field(description="a redacted description of the target; never a secret")
    digest_size: int = Field(default=1, ge=1, description="jobs covered by this one message")


class DeadLetter(EventData):
    """A record a consumer could not handle, with why."""

    TYPE = "stoker.deadletter.v1"
    SCHEMA_NAME = "dead-letter"
    original_topic: str
    original_partition: int
    original_offset: int
    original_key: str
    original_value: str = Field(description="the record as received (UTF-8, or base64 if binary)")
    original_value_encoding: Literal["utf-8", "base64"] = "utf-8"
    consumer_group: str
    error_kind: Literal["decode", "schema", "unknown-type", "handler"]
    reason: str
    attempts: int = Field(ge=0)
    failed_at: datetime

    def partition_key(self) -> str:
        return self.original_key


_REGISTERED: tuple[type[EventData], ...] = (
    JobSubmitted,
    JobStatusChanged,
    JobRetryScheduled,
    JobAttemptFailed,
    JobCompleted,
    JobFailed,
    JobStopped,
    JobDescribed,
    NotificationSent,
    DeadLetter,
    *PIPELINE_EVENT_TYPES,
)
EVENT_TYPES: dict[str, type[EventData]] = {cls.TYPE: cls for cls in _REGISTERED}


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in structured JSON mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(
        min_length=1,
        description="the partition key: the job id (the execution id for pipeline events)",
    )
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    traceparent: str | None = Field(
        default=None,
        pattern=TRACEPARENT_PATTERN,
        description="W3C Trace Context of the work that produced the event (the CloudEvents "
        "distributed tracing extension): a job's events share its submission's trace id",
    )
    tracestate: str | None = Field(
        default=None,
        max_length=512,
        description="W3C Trace Context vendor state that travels with `traceparent`",
    )
    data: SerializeAsAny[EventData]

    @classmethod
    def wrap(
        cls,
        data: EventData,
        *,
        time: datetime,
        event_id: str | None = None,
        source: str = SOURCE,
        traceparent: str | None = None,
    ) -> CloudEvent:
        """The event of `data`. `traceparent`: its trace context; by default that of the
        work in hand (`tracecontext.current_traceparent`), if any."""
        return cls(
            id=event_id or str(uuid.uuid4()),
            source=source,
            type=data.TYPE,
            subject=data.partition_key(),
            time=time,
            dataschema=f"{data.SCHEMA_NAME}.schema.json",
            traceparent=traceparent or current_traceparent.get(),
            data=data,
        )

    def to_json(self) -> bytes:
        """The event as published. Made once per event: the store's outbox row and the
        publish both need it, and it is a visible share of a transition's CPU."""
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:
        # Null optional fields stay in: a nullable field may still be required by its schema.
        # Serialised straight to bytes: through a dict and orjson took twice as long.
        return self.__pydantic_serializer__.to_json(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("_json", None)  # the copy's bytes are its own
        return copy


def decode_event(raw: bytes) -> CloudEvent:
    """Parse and validate one structured CloudEvent. Raises EventRejected with the reason."""
    doc, data_cls = _parse(raw)
    return _validated(doc, data_cls)


def decode_wanted_event(
    raw: bytes,
    wanted: Collection[type[EventData]],
    statuses: Collection[str] | None = None,
) -> CloudEvent | None:
    """`decode_event` for a consumer that handles only the `wanted` types: None for a stoker
    event of another type, which is left unvalidated. Validating every event of a shared
    topic in every group cost more than the handling of the few each group acts on; the
    groups that handle an event validate it (and dead-letter it if it is invalid). Records
    that are not JSON or not of a stoker type are rejected as by `decode_event`.

    `statuses`: the `to_status` values of `JobStatusChanged` the consumer acts on (None: all);
    a status change to another one is passed over like an unwanted type. Status changes are
    most of the lifecycle topic, and each group acts on few of them."""
    doc, data_cls = _parse(raw)
    if data_cls not in wanted:
        return None
    if statuses is not None and data_cls is JobStatusChanged:
        data = doc.get("data")
        to_status = data.get("to_status") if isinstance(data, dict) else None
        if isinstance(to_status, str) and to_status not in statuses:
            return None
    return _validated(doc, data_cls)


def _parse(raw: bytes) -> tuple[dict[str, Any], type[EventData]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(f"decode: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise EventRejected("decode: a CloudEvent must be a JSON object")
    event_type = doc.get("type")
    data_cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if data_cls is None:
        raise EventRejected(f"unknown-type: {event_type!r} is not a stoker event type")
    return doc, data_cls


def _validated(doc: dict[str, Any], data_cls: type[EventData]) -> CloudEvent:
    try:
        data = data_cls.model_validate(doc.get("data"))
        return CloudEvent.model_validate({**doc, "data": data})
    except ValidationError as exc:
        raise EventRejected(f"schema: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def envelope_schema() -> dict[str, Any]:
    """JSON Schema of the envelope, data left open (each type has its own schema)."""
    schema = CloudEvent.model_json_schema(mode="serialization")
    schema["properties"]["data"] = {"type": "object"}
    schema.pop("$defs", None)
    return schema
