"""What the notifier says: one message about one job, or a digest about several.

Pure data and text rendering; channels turn a `Notification` into Slack blocks, an SNS
publish or a signed JSON body.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stoker.core.auth import DEFAULT_TEAM
from stoker.core.events import JobCompleted, JobFailed, JobStopped
from stoker.core.job import JobStatus
from stoker.core.spec import EmailTarget, SlackTarget, WebhookTarget


class ConsoleTarget(BaseModel):
    """Print to the notifier's standard output (the embedded default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["console"] = "console"


class FileTarget(BaseModel):
    """Append one JSON line per message to a local file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["file"] = "file"
    path: str


Target = SlackTarget | EmailTarget | WebhookTarget | ConsoleTarget | FileTarget
TerminalEvent = JobCompleted | JobFailed | JobStopped


@dataclass(frozen=True, slots=True)
class JobNote:
    """The facts about one terminal job that every channel shows."""

    job_id: str
    owner: str
    state: JobStatus
    attempts: int
    reason: str | None
    ended_at: datetime
    duration_s: float | None = None
    training_job_name: str | None = None
    team: str = DEFAULT_TEAM
    """Whose notification secrets a `secret_ref` target of this job resolves in."""
    billable_seconds: int | None = None
    model_artifacts: str | None = None
    details_pending: bool = False
    """The end was told before the backend described the job: billable time and model
    artifacts follow (the job's details, and a `stoker.job.described.v1` event)."""
    traceparent: str | None = None
    """The job's trace context (from its terminal event), for the NotificationSent events;
    kept in the ledger, not shown to receivers (`as_json` leaves it out)."""

    @classmethod
    def from_event(cls, data: TerminalEvent) -> JobNote:
        artifacts = None
        if isinstance(data, JobCompleted):
            state, reason, artifacts = JobStatus.COMPLETED, None, data.model_artifacts
        elif isinstance(data, JobFailed):
            state, reason = JobStatus.FAILED, data.failure_reason
        else:
            state, reason = JobStatus.STOPPED, data.reason
        duration = (data.ended_at - data.started_at).total_seconds() if data.started_at else None
        return cls(
            job_id=data.job_id,
            owner=data.owner,
            state=state,
            attempts=data.attempts,
            reason=reason,
            ended_at=data.ended_at,
            duration_s=duration,
            training_job_name=data.training_job_name,
            billable_seconds=data.billable_seconds,
            model_artifacts=artifacts,
            details_pending=data.details_pending,
        )

    def details_text(self) -> str:
        """Billable time and model artifacts as known, or that they follow."""
        if self.details_pending:
            return "billable time and model artifacts to follow"
        parts = []
        if self.billable_seconds is not None:
            parts.append(f"billable {self.billable_seconds} s")
        if self.model_artifacts:
            parts.append(f"model {self.model_artifacts}")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "owner": self.owner,
            "state": self.state.value,
            "attempts": self.attempts,
            "reason": self.reason,
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "training_job_name": self.training_job_name,
            "team": self.team,
            "billable_seconds": self.billable_seconds,
            "model_artifacts": self.model_artifacts,
            "details_pending": self.details_pending,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> JobNote:
        return cls(
            job_id=doc["job_id"],
            owner=doc["owner"],
            state=JobStatus(doc["state"]),
            attempts=int(doc["attempts"]),
            reason=doc.get("reason"),
            ended_at=datetime.fromisoformat(doc["ended_at"]),
            duration_s=doc.get("duration_s"),
            training_job_name=doc.get("training_job_name"),
            team=doc.get("team") or DEFAULT_TEAM,
            billable_seconds=doc.get("billable_seconds"),
            model_artifacts=doc.get("model_artifacts"),
            details_pending=bool(doc.get("details_pending")),
            traceparent=doc.get("traceparent"),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a `secret_ref` target resolved to: credentials, never shown (not in its repr)."""

    url: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one target.

    idempotency_key: the ledger entry id for a single job, the digest id for a digest;
    the same message sent twice after a crash carries the same key.
    endpoint: the resolved URL (and signing secret) of a `secret_ref` target; None for a
    target that carries its own destination.
    """

    idempotency_key: str
    owner: str
    target: Target
    jobs: tuple[JobNote, ...] = field(default_factory=tuple)
    endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        if not self.jobs:
            raise ValueError("a notification covers at least one job")

    @property
    def is_digest(self) -> bool:
        return len(self.jobs) > 1

    def counts(self) -> dict[str, int]:
        """Jobs per terminal state, in a stable order."""
        counted = Counter(note.state.value for note in self.jobs)
        return {state: counted[state] for state in sorted(counted)}

    def title(self) -> str:
        if not self.is_digest:
            note = self.jobs[0]
            return f"stoker: job {note.job_id} {note.state.value}"
        summary = ", ".join(f"{n} {state}" for state, n in self.counts().items())
        return f"stoker: {len(self.jobs)} jobs of {self.owner} finished ({summary})"

    def text(self) -> str:
        """Plain text for email and the console."""
        lines = [self.title(), ""]
        for note in self.jobs:
            lines.append(
                f"- {note.job_id}: {note.state.value}, "
                f"ended {note.ended_at.isoformat(timespec='seconds')}, "
                f"attempts {note.attempts}, duration {format_duration(note.duration_s)}"
                + (f", {details}" if (details := note.details_text()) else "")
                + (f", reason: {note.reason}" if note.reason else "")
            )
        lines += ["", f"owner: {self.owner}", f"ref: {self.idempotency_key}"]
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The JSON body a webhook receives (the idempotency key is inside the signed bytes)."""
        return {
            "type": "stoker.notification.v1",
            "idempotency_key": self.idempotency_key,
            "owner": self.owner,
            "digest": self.is_digest,
            "counts": self.counts(),
            "jobs": [note.as_json() for note in self.jobs],
        }


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
