"""Every topic stoker produces or consumes, in one place (documented in docs/topics.md)."""

from __future__ import annotations

from typing import Final

SUBMISSIONS: Final = "stoker.jobs.submitted"
"""JobSubmitted in: any Kafka client may produce here."""

LIFECYCLE: Final = "stoker.jobs.lifecycle"
"""Every internal transition (JobStatusChanged, JobRetryScheduled, JobAttemptFailed)."""

COMPLETED: Final = "stoker.jobs.completed"
FAILED: Final = "stoker.jobs.failed"
STOPPED: Final = "stoker.jobs.stopped"
"""Public outputs, one topic per terminal state."""

SAGEMAKER_STATE_CHANGES: Final = "stoker.sagemaker.state-changes"
"""EventBridge "SageMaker Training Job State Change" events, forwarded as they are (optional)."""

NOTIFICATIONS: Final = "stoker.notifications"
"""NotificationSent, one per message delivered."""

DEAD_LETTER: Final = "stoker.deadletter"
"""DeadLetter records: events a consumer could not decode, validate or handle."""

DUPLICATE_PAIRS: Final = "stoker.duplicates.pairs"
DUPLICATE_SCORES: Final = "stoker.duplicates.scores"
"""Streaming duplicate detection: product pairs in, scores out."""

PIPELINE_EXECUTIONS: Final = "stoker.pipelines.executions"
"""Pipeline executions: started, each step's ready/started/succeeded/failed/skipped/stopped,
and the end; keyed by execution id (docs/pipelines.md)."""

ALL_TOPICS: Final = (
    SUBMISSIONS,
    LIFECYCLE,
    COMPLETED,
    FAILED,
    STOPPED,
    SAGEMAKER_STATE_CHANGES,
    NOTIFICATIONS,
    DEAD_LETTER,
    DUPLICATE_PAIRS,
    DUPLICATE_SCORES,
    PIPELINE_EXECUTIONS,
)
