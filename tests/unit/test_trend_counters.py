"""The trend counters every store keeps: completion buckets, percentiles, what a write adds,
and an SQLite file from before the counters recounting its statuses and retries."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.store_rules import plan_transition
from stoker.core.trends import (
    BILLABLE,
    COMPLETION,
    STATUS,
    Measure,
    bucket_quantile,
    bucket_upper_s,
    completion_bucket,
    measures,
)

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [0.2, 1, 1.05, 59, 60, 61, 3600, 86_400 * 3])
def test_a_bucket_bounds_its_time_within_ten_percent(seconds: float) -> None:
    """Each time lands in a bucket whose upper bound is at least it and under 1.1 times it
    (or 1 s for the shortest)."""
    upper = bucket_upper_s(completion_bucket(seconds))
    assert upper >= seconds
    assert upper < max(1.0001, seconds * 1.1)


def test_quantiles_take_the_nearest_rank_and_refuse_nonsense() -> None:
    """The quantile is the bucket holding the job at ceil(q * n); no jobs give None."""
    counts = {completion_bucket(10): 9, completion_bucket(1000): 1}
    assert bucket_quantile(counts, 0.5) == bucket_upper_s(completion_bucket(10))
    assert bucket_quantile(counts, 0.9) == bucket_upper_s(completion_bucket(10))
    assert bucket_quantile(counts, 0.91) == bucket_upper_s(completion_bucket(1000))
    assert bucket_quantile({}, 0.5) is None
    with pytest.raises(ValueError, match="quantile must be in"):
        bucket_quantile(counts, 0)


def test_a_completion_counts_its_day_bucket_and_first_billable_time() -> None:
    """Completing adds the status, the time-to-completion bucket and (once) the billable
    seconds under the instance type the job asked for, on the UTC day of the write."""
    job = JobRecord(
        job_id="j",
        owner="ana",
        team="search",
        status=JobStatus.IN_PROGRESS,
        version=3,
        created_at=T0,
        updated_at=T0,
        spec={"training": {"ResourceConfig": {"InstanceType": "ml.g5.xlarge"}}},
    )
    end = T0 + timedelta(hours=2)
    change = JobChange(to_status=JobStatus.COMPLETED, at=end, details={"billable_seconds": 7000.4})
    updated, line = plan_transition(job, change, 3)
    assert measures(job, updated, line) == [
        Measure(date(2026, 3, 2), STATUS, "Completed"),
        Measure(date(2026, 3, 2), COMPLETION, str(completion_bucket(7200))),
        Measure(date(2026, 3, 2), BILLABLE, "ml.g5.xlarge", 7000),
    ]
    amend = JobChange(to_status=JobStatus.COMPLETED, at=end, details={"billable_seconds": 1})
    again, line = plan_transition(updated, amend, 4)
    assert measures(updated, again, line) == []


async def test_sqlite_file_from_before_the_counters_recounts_statuses_and_retries(
    tmp_path: Path,
) -> None:
    """A file whose history predates the counters gets its statuses and retries counted per
    team when a store opens it; later writes add to those counts."""
    path = tmp_path / "jobs.db"
    store = SqliteJobStore(path)
    await store.start()
    job = JobRecord(job_id="old", owner="ana", team="ads", created_at=T0, updated_at=T0)
    await store.create(job)
    await store.transition(
        "old", JobChange(to_status=JobStatus.LAUNCHING, at=T0), expected_version=1
    )
    await store.transition(
        "old",
        JobChange(to_status=JobStatus.RETRY_SCHEDULED, at=T0, reason="CapacityError", due_at=T0),
        expected_version=2,
    )
    await store.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP TABLE trend_counts")
    old.close()

    store = SqliteJobStore(path)
    await store.start()
    try:
        trends = await store.trends(T0, T0, team="ads")
        assert trends.jobs_per_status_per_day == {
            date(2026, 3, 1): {
                JobStatus.NEW: 1,
                JobStatus.LAUNCHING: 1,
                JobStatus.RETRY_SCHEDULED: 1,
            }
        }
        assert trends.retries_per_reason == {"CapacityError": 1}
        await store.transition(
            "old", JobChange(to_status=JobStatus.LAUNCHING, at=T0), expected_version=3
        )
        again = await store.trends(T0, T0)
        assert again.jobs_per_status_per_day[date(2026, 3, 1)][JobStatus.LAUNCHING] == 2
    finally:
        await store.close()
