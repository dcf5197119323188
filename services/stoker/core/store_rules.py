"""Rules every JobStore adapter shares, so memory, SQLite and DynamoDB agree exactly.

- Times in keys are UTC, fixed width (`2026-01-31T09:30:00.000000Z`), so text order is
  time order and a key prefix selects a day.
- `list_jobs` is newest first by (created time, job id); a cursor is the position of the
  last job returned, base64 of JSON, and is opaque to callers.
- `trends` counts whole UTC days, from the day of `since` to the day of `until` inclusive,
  because the DynamoDB adapter keeps per-day counters rather than scanning history.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from stoker.core.cursors import as_utc, encode_cursor, time_key
from stoker.core.errors import IllegalTransition, StokerError, VersionConflict
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition

MAX_PAGE = 1000
MAX_OUTBOX_EVENTS = 90
"""A DynamoDB transaction holds at most 100 items; the job, its history and counters use a few."""

MAX_TREND_DAYS = 3660
CREATED_REASON = "created"
UNSPECIFIED_REASON = "unspecified"


class StoreFailure(StokerError):
    """The store answered with something no retry will fix (a corrupt file, a bad schema)."""


def day_key(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d")


def job_position(job: JobRecord) -> tuple[str, str]:
    """Where a job sits in newest-first order: (created time key, job id)."""
    return time_key(job.created_at), job.job_id


def cursor_after(job: JobRecord) -> str:
    """The cursor of a page that continues after `job` (every store's format)."""
    created, job_id = job_position(job)
    return encode_cursor({"t": created, "id": job_id})


def cursor_before(moment: datetime) -> str:
    """A cursor whose page starts with the newest job created at or before `moment`: no
    stored job id is below the empty one, so the position is just after that time."""
    return encode_cursor({"t": time_key(moment + timedelta(microseconds=1)), "id": ""})


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")


def check_outbox(outbox: Sequence[tuple[str, CloudEvent]]) -> None:
    if len(outbox) > MAX_OUTBOX_EVENTS:
        raise ValueError(f"at most {MAX_OUTBOX_EVENTS} outbox events per write, got {len(outbox)}")


def creation_line(job: JobRecord) -> Transition:
    """The first history line of a job."""
    return Transition(
        job_id=job.job_id,
        version=job.version,
        from_status=None,
        to_status=job.status,
        at=job.created_at,
        reason=CREATED_REASON,
        attempt=job.attempt,
    )


def plan_transition(
    current: JobRecord, change: JobChange, expected_version: int
) -> tuple[JobRecord, Transition]:
    """The new record and its history line; checks the version first, then the state machine.

    The version comes first: a stale writer's view of the status is not worth judging.
    """
    if current.version != expected_version:
        raise VersionConflict(current.job_id, expected_version, current.version)
    updated = change.apply(current)
    line = Transition(
        job_id=current.job_id,
        version=updated.version,
        from_status=current.status,
        to_status=updated.status,
        at=change.at,
        reason=change.reason,
        attempt=updated.attempt,
    )
    return updated, line


def records_history(line: Transition) -> bool:
    """Whether a planned write is a transition, kept in the history and counted in trends;
    an amendment of an ended job (the same terminal status, more details) is neither."""
    return line.from_status is not line.to_status


def plan_from_copy(
    current: JobRecord | None, job_id: str, change: JobChange, expected_version: int
) -> tuple[JobRecord, Transition] | None:
    """The transition planned on the caller's copy of the job, when it may be: the copy is
    of this job at the expected version and its status allows the change. None otherwise:
    then the stored row decides (a stale writer gets a version conflict, not a verdict on a
    status it should not trust). The write's version condition guards either way."""
    if current is None or current.job_id != job_id or current.version != expected_version:
        return None
    try:
        return plan_transition(current, change, expected_version)
    except IllegalTransition:
        return None


def retry_reason(line: Transition) -> str:
    return line.reason or UNSPECIFIED_REASON


def trend_days(since: datetime, until: datetime) -> tuple[date, date]:
    """The first and last UTC day a trend query covers."""
    first, last = as_utc(since).date(), as_utc(until).date()
    if last < first:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
    if (last - first).days > MAX_TREND_DAYS:
        raise ValueError(f"a trend query covers at most {MAX_TREND_DAYS} days")
    return first, last


def days_between(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


class SortableIds:
    """Unique ids whose text order is creation order within a process and roughly across
    processes: 20 digits of nanoseconds, then 8 random hex digits."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            now = max(time.time_ns(), self._last + 1)
            self._last = now
        return f"{now:020d}{os.urandom(4).hex()}"


def event_bytes(event: CloudEvent) -> bytes:
    """An outbox event as stored: the same bytes a bus would publish, so in the DynamoDB
    Streams mode the outbox item is itself the published record."""
    return event.to_json()


def status_of(value: str) -> JobStatus:
    return JobStatus(value)
