"""Which events a transition emits. Pure: the store writes them with the transition."""

from __future__ import annotations

from typing import Any

from stoker.core import topics
from stoker.core.events import (
    CloudEvent,
    EventData,
    JobCompleted,
    JobDescribed,
    JobFailed,
    JobStatusChanged,
    JobStopped,
)
from stoker.core.job import JobRecord, JobStatus
from stoker.core.job_kind import JobKind, kind_of
from stoker.core.tracecontext import current_traceparent

Outbox = list[tuple[str, CloudEvent]]


def status_changed(before: JobRecord | None, after: JobRecord, reason: str | None) -> Outbox:
    """The lifecycle event every transition emits, plus the public one for terminal states.
    An amendment of an ended job emits only its description, after the terminal event."""
    if before is not None and before.status is after.status and after.status.terminal:
        return described(after)
    data = JobStatusChanged(
        job_id=after.job_id,
        owner=after.owner,
        version=after.version,
        from_status=before.status if before else None,
        to_status=after.status,
        attempt=after.attempt,
        reason=reason,
        kind=JobKind.PROCESSING if kind_of(after.spec) is JobKind.PROCESSING else None,
    )
    out: Outbox = [(topics.LIFECYCLE, _wrap(data, after))]
    terminal = terminal_event(after, reason)
    if terminal is not None:
        out.append(terminal)
    return out


def extra(data: EventData, after: JobRecord, topic: str = topics.LIFECYCLE) -> Outbox:
    return [(topic, _wrap(data, after))]


def terminal_event(job: JobRecord, reason: str | None) -> tuple[str, CloudEvent] | None:
    details = job.details
    common: dict[str, Any] = {
        "job_id": job.job_id,
        "owner": job.owner,
        "attempts": job.attempt,
        "training_job_name": details.get("training_job_name"),
        "started_at": details.get("started_at"),
        "ended_at": details.get("ended_at") or job.updated_at,
        "billable_seconds": details.get("billable_seconds"),
        "details_pending": bool(details.get("details_pending")),
    }
    if job.status is JobStatus.COMPLETED:
        data: EventData = JobCompleted.model_validate(
            {**common, "model_artifacts": details.get("model_artifacts")}
        )
        return topics.COMPLETED, _wrap(data, job)
    if job.status is JobStatus.FAILED:
        data = JobFailed.model_validate(
            {
                **common,
                "failure_reason": job.failure_reason or reason or "unknown",
                "failure_code": details.get("failure_code"),
            }
        )
        return topics.FAILED, _wrap(data, job)
    if job.status is JobStatus.STOPPED:
        return topics.STOPPED, _wrap(JobStopped.model_validate({**common, "reason": reason}), job)
    return None


def described(job: JobRecord) -> Outbox:
    """The backend's facts about an ended job, on its terminal topic (so after its end)."""
    details = job.details
    data = JobDescribed.model_validate(
        {
            "job_id": job.job_id,
            "owner": job.owner,
            "status": job.status,
            "attempts": job.attempt,
            "training_job_name": details.get("training_job_name"),
            "started_at": details.get("started_at"),
            "ended_at": details.get("ended_at") or job.updated_at,
            "billable_seconds": details.get("billable_seconds"),
            "training_seconds": details.get("training_seconds"),
            "model_artifacts": details.get("model_artifacts"),
        }
    )
    return [(TERMINAL_TOPICS[job.status], _wrap(data, job))]


TERMINAL_TOPICS = {
    JobStatus.COMPLETED: topics.COMPLETED,
    JobStatus.FAILED: topics.FAILED,
    JobStatus.STOPPED: topics.STOPPED,
}


def _wrap(data: EventData, job: JobRecord) -> CloudEvent:
    # A deterministic id per (job, version, type): an event re-emitted after a crash keeps its id,
    # so consumers and receivers can drop the copy.
    return CloudEvent.wrap(
        data,
        time=job.updated_at,
        event_id=f"{job.job_id}:{job.version}:{data.SCHEMA_NAME}",
        traceparent=job_traceparent(job),
    )


def job_traceparent(job: JobRecord) -> str | None:
    """The trace context of the job's next event: that of the work in hand when it is in the
    job's trace (a span around the handling of one of its events), else the one kept with the
    job at its submission, so that every event of a job carries the job's trace id, whichever
    task writes it."""
    kept = job.details.get("traceparent")
    current = current_traceparent.get()
    if current is None:
        return kept if isinstance(kept, str) else None
    if not isinstance(kept, str) or current[3:35] == kept[3:35]:  # the trace id's characters
        return current
    return kept
