"""The job state machine: which transitions exist and what a change does to a record."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from stoker.core.errors import IllegalTransition
from stoker.core.job import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    JobChange,
    JobRecord,
    JobStatus,
    check_transition,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(status: JobStatus = JobStatus.NEW) -> JobRecord:
    return JobRecord(job_id="j-1", owner="ana", status=status, created_at=T0, updated_at=T0)


def test_terminal_states_have_no_way_out() -> None:
    """Completed, Failed and Stopped are final: no edge leaves them."""
    for status in TERMINAL_STATUSES:
        assert ALLOWED_TRANSITIONS[status] == frozenset()
        assert status.terminal


def test_every_live_state_can_fail_or_be_stopped() -> None:
    """A stop or a terminal failure can reach a job wherever it is."""
    for status, targets in ALLOWED_TRANSITIONS.items():
        if status.terminal:
            continue
        assert JobStatus.FAILED in targets
        assert JobStatus.STOPPING in targets or JobStatus.STOPPED in targets


def test_the_seed_path_is_allowed() -> None:
    """New -> Launching -> Launched -> InProgress -> Completed, as in the design."""
    path = [
        JobStatus.NEW,
        JobStatus.LAUNCHING,
        JobStatus.LAUNCHED,
        JobStatus.IN_PROGRESS,
        JobStatus.COMPLETED,
    ]
    for a, b in itertools.pairwise(path):
        check_transition("j", a, b)


def test_illegal_transition_names_both_states() -> None:
    """Completed -> Launching is refused with a message naming the job and both states."""
    with pytest.raises(IllegalTransition, match=r"'j-1': Completed -> Launching"):
        check_transition("j-1", JobStatus.COMPLETED, JobStatus.LAUNCHING)


def test_apply_bumps_version_and_merges_details() -> None:
    """A change moves the status, adds one to the version and merges details."""
    job = _job().model_copy(update={"details": {"a": 1}})
    after = JobChange(
        to_status=JobStatus.LAUNCHING, at=T0 + timedelta(seconds=1), attempt=1, details={"b": 2}
    ).apply(job)
    assert (after.status, after.version, after.attempt) == (JobStatus.LAUNCHING, 2, 1)
    assert after.details == {"a": 1, "b": 2}
    assert after.updated_at == T0 + timedelta(seconds=1)


def test_due_time_only_kept_while_retry_waits() -> None:
    """due_at is set entering RetryScheduled and cleared on the way out."""
    due = T0 + timedelta(minutes=5)
    waiting = JobChange(to_status=JobStatus.RETRY_SCHEDULED, at=T0, due_at=due).apply(
        _job(JobStatus.IN_PROGRESS)
    )
    assert waiting.due_at == due
    relaunching = JobChange(to_status=JobStatus.LAUNCHING, at=due).apply(waiting)
    assert relaunching.due_at is None
