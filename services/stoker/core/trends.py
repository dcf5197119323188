"""What the trend queries count, decided once for every store. Pure: no I/O.

A store keeps, per UTC day and per team, counters a write adds to (the DynamoDB adapter
cannot scan history for a dashboard, so every adapter keeps the same counters and they agree
exactly):

- `S` / `R`: jobs entering each status, and transitions into RetryScheduled by reason (one
  per history line, as `Trends.jobs_per_status_per_day` and `retries_per_reason` count).
- `C`: jobs completed, by bucket of their time to completion (created to Completed). The
  buckets grow by `COMPLETION_GROWTH`, so a percentile read from them is the upper bound of
  its bucket: never below the true value and less than 10% above it.
- `B`: billable seconds, by instance type, added once, by the write in which the job's
  `details.billable_seconds` first appears (a transition or an amendment of an ended job),
  on that write's day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from stoker.core.cursors import as_utc
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.store_rules import UNSPECIFIED_REASON

COMPLETION_GROWTH = 1.1
"""Each time-to-completion bucket's upper bound is this many times the one below it."""
MAX_COMPLETION_BUCKET = 400
"""1.1**400 s is far beyond any job; longer times land in the last bucket."""
UNKNOWN_INSTANCE_TYPE = "unknown"

STATUS = "S"
RETRY = "R"
COMPLETION = "C"
BILLABLE = "B"
KINDS = (STATUS, RETRY, COMPLETION, BILLABLE)


@dataclass(frozen=True, slots=True)
class Measure:
    """One counter a write adds `amount` to: (day, kind, name) within the job's team."""

    day: date
    kind: str
    name: str
    amount: int = 1


@dataclass(frozen=True, slots=True)
class Trends:
    """Counts over whole UTC days, for one team or every team."""

    jobs_per_status_per_day: dict[date, dict[JobStatus, int]] = field(default_factory=dict)
    """How many jobs entered each status, per UTC day."""
    retries_per_reason: dict[str, int] = field(default_factory=dict)
    """Transitions into RetryScheduled, by reason."""
    completions_per_bucket: dict[int, int] = field(default_factory=dict)
    """Completed jobs by time-to-completion bucket (`completion_bucket`)."""
    billable_seconds: dict[tuple[str, str], int] = field(default_factory=dict)
    """Billable seconds by (instance type, team)."""

    def completion_percentiles(self, *quantiles: float) -> dict[float, float | None]:
        """Time to completion in seconds at each quantile (0 < q <= 1); None without jobs."""
        return {q: bucket_quantile(self.completions_per_bucket, q) for q in quantiles}


def completion_bucket(seconds: float) -> int:
    """The bucket of a time to completion: 0 holds up to 1 s, bucket b up to 1.1**b s."""
    if seconds <= 1:
        return 0
    bucket = math.ceil(math.log(seconds) / math.log(COMPLETION_GROWTH) - 1e-9)
    return min(bucket, MAX_COMPLETION_BUCKET)


def bucket_upper_s(bucket: int) -> float:
    return float(COMPLETION_GROWTH**bucket)


def bucket_quantile(counts: Mapping[int, int], quantile: float) -> float | None:
    """The upper bound of the bucket holding the `quantile`-th job (nearest rank)."""
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    total = sum(counts.values())
    if total == 0:
        return None
    rank = math.ceil(quantile * total)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket_upper_s(bucket)
    return bucket_upper_s(max(counts))  # unreachable: seen reaches total


def billable_of(job: JobRecord) -> int | None:
    value = job.details.get("billable_seconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(value)


def instance_type_of(job: JobRecord) -> str:
    """The instance type the job ran on: the backend's, else the one its request asked for."""
    chosen = job.details.get("instance_type")
    if isinstance(chosen, str) and chosen:
        return chosen
    training: Any = job.spec.get("training")
    if isinstance(training, dict):
        resources = training.get("ResourceConfig")
        if isinstance(resources, dict) and isinstance(resources.get("InstanceType"), str):
            return str(resources["InstanceType"])
    return UNKNOWN_INSTANCE_TYPE


def measures(before: JobRecord | None, after: JobRecord, line: Transition) -> list[Measure]:
    """What a write adds to the counters: `before` is the stored job (None for a create),
    `after` the job written and `line` its history line (an amendment's is not kept, and
    adds only a billable measure)."""
    day = as_utc(line.at).date()
    added: list[Measure] = []
    if line.from_status is not line.to_status:
        added.append(Measure(day, STATUS, line.to_status.value))
        if line.to_status is JobStatus.RETRY_SCHEDULED:
            added.append(Measure(day, RETRY, line.reason or UNSPECIFIED_REASON))
        if line.to_status is JobStatus.COMPLETED:
            took = (line.at - after.created_at).total_seconds()
            added.append(Measure(day, COMPLETION, str(completion_bucket(took))))
    billable = billable_of(after)
    if billable is not None and (before is None or billable_of(before) is None):
        added.append(Measure(day, BILLABLE, instance_type_of(after), billable))
    return added


def fold(rows: Iterable[tuple[date, str, str, str, int]]) -> Trends:
    """Trends from counter rows (day, team, kind, name, amount), summed over repeats."""
    per_day: dict[date, dict[JobStatus, int]] = {}
    retries: dict[str, int] = {}
    completions: dict[int, int] = {}
    billable: dict[tuple[str, str], int] = {}
    for day, team, kind, name, amount in rows:
        if kind == STATUS:
            statuses = per_day.setdefault(day, {})
            status = JobStatus(name)
            statuses[status] = statuses.get(status, 0) + amount
        elif kind == RETRY:
            retries[name] = retries.get(name, 0) + amount
        elif kind == COMPLETION:
            completions[int(name)] = completions.get(int(name), 0) + amount
        elif kind == BILLABLE:
            billable[(name, team)] = billable.get((name, team), 0) + amount
    return Trends(
        jobs_per_status_per_day=dict(sorted(per_day.items())),
        retries_per_reason=retries,
        completions_per_bucket=dict(sorted(completions.items())),
        billable_seconds=billable,
    )
