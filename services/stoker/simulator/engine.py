"""The simulator's state: training jobs as timelines, quotas, throttling and call counts.

No network here. Each job's future is fixed when it is created (a list of timed state
changes drawn from a per-job seeded RNG), and its state at any moment is the last change
at or before the clock's `now()`. So the engine needs no background tasks, a fake clock
drives it in tests, and LastModifiedTime is exact.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stoker.core.clock import Clock, SystemClock
from stoker.core.failures import CAPACITY_REASON
from stoker.simulator.errors import NAME_PATTERN, SimulatorError
from stoker.simulator.faults import FaultConfig
from stoker.simulator.processing import SimulatedProcessing

ALGORITHM_REASON = "AlgorithmError: simulated failure of the training code (injected fault)"
_ACTIVE = frozenset({"InProgress", "Stopping"})
_TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
_MAX_RESULTS = 100
_LISTINGS_KEPT = 64
"""Unfinished multi-page listings kept for their next page."""
_AFTER_EVERY_KEY = "\U0010ffff"
"""Sorts after every job key: (t, _AFTER_EVERY_KEY) comes after each entry stamped t."""


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    status: str
    secondary: str
    failure_reason: str | None = None


@dataclass
class SimJob:
    name: str
    arn: str
    request: dict[str, Any]
    instance_type: str
    instance_count: int
    speedup: float
    timeline: list[Change]
    training_start: datetime | None
    model_artifacts: str | None

    def state(self, now: datetime) -> Change:
        current = self.timeline[0]
        for change in self.timeline:
            if change.at > now:
                break
            current = change
        return current

    @property
    def created(self) -> datetime:
        return self.timeline[0].at


def _last_change_entry(job: SimJob) -> tuple[float, str]:
    """Where a job sits in the index by last change: (when its timeline ends, its key)."""
    return job.timeline[-1].at.timestamp(), job.name.lower()


class TokenBucket:
    """`rate` requests per second with bursts up to `burst`, on a monotonic clock."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def take(self) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    """Requests per operation, throttled ones included."""
    throttled: Counter[str] = field(default_factory=Counter)
    internal_errors: int = 0
    create_requests: Counter[str] = field(default_factory=Counter)
    """CreateTrainingJob requests that got past throttling, per TrainingJobName."""
    created: Counter[str] = field(default_factory=Counter)
    """Jobs actually created, per TrainingJobName (never above 1)."""
    stop_requests: Counter[str] = field(default_factory=Counter)
    """StopTrainingJob requests that found the job still running, per TrainingJobName."""
    stops_after_end: Counter[str] = field(default_factory=Counter)
    """StopTrainingJob requests refused because the job had ended, per TrainingJobName."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "throttled": dict(self.throttled),
            "internal_errors": self.internal_errors,
            "create_requests": dict(self.create_requests),
            "created": dict(self.created),
            "stop_requests": dict(self.stop_requests),
            "stops_after_end": dict(self.stops_after_end),
            "max_create_requests_per_name": max(self.create_requests.values(), default=0),
            "max_created_per_name": max(self.created.values(), default=0),
        }


_SORT_KEYS: dict[str, Callable[[tuple[SimJob, Change]], Any]] = {
    "Name": lambda row: row[0].name,
    "CreationTime": lambda row: row[0].created.timestamp(),  # goes into NextToken as JSON
    "Status": lambda row: row[1].status,
}
"""ListTrainingJobs' SortBy values: the primary key of a (job, its state now) row."""


class SimulatedSageMaker:
    """SageMaker's training-job (and processing-job) operations over in-memory jobs, with
    injected faults."""

    def __init__(self, faults: FaultConfig | None = None, clock: Clock | None = None) -> None:
        self.faults = faults or FaultConfig()
        self.clock = clock or SystemClock()
        self.stats = Stats()
        self.jobs: dict[str, SimJob] = {}
        # (time of a job's last timeline change, key), sorted: a listing of what changed
        # after T reads only jobs whose timeline reaches past T, not every job ever made.
        self._by_last_change: list[tuple[float, str]] = []
        # Listings with more than one page, by id: later pages are cut from the rows the
        # first page saw (a consistent listing, and one scan of every job per listing
        # instead of one per page). The oldest go first.
        self._listings: OrderedDict[str, list[tuple[SimJob, Change]]] = OrderedDict()
        self._request_rng = random.Random(self.faults.seed)
        burst = self.faults.throttle_burst
        self._bucket = (
            TokenBucket(
                self.faults.throttle_rps, burst or math.ceil(self.faults.throttle_rps), self.clock
            )
            if self.faults.throttle_rps
            else None
        )
        self.timeline_listeners: list[Callable[[SimJob], None]] = []
        """Called with a job whenever its future is drawn or redrawn (created, stopped)."""
        self._op_buckets = {
            op: TokenBucket(rps, burst or math.ceil(rps), self.clock)
            for op, rps in self.faults.throttle_rps_by_operation.items()
        }
        self._processing: SimulatedProcessing | None = None

    @property
    def processing(self) -> SimulatedProcessing:
        """The processing jobs: an engine of their own (made on first use), same faults."""
        if self._processing is None:
            self._processing = SimulatedProcessing(SimulatedSageMaker(self.faults, self.clock))
        return self._processing

    # --- request entry -----------------------------------------------------------------

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run one API operation; raises SimulatorError as the API would answer."""
        self.stats.requests[operation] += 1
        bucket = self._op_buckets.get(operation, self._bucket)
        if bucket is not None and not bucket.take():
            self.stats.throttled[operation] += 1
            raise SimulatorError("ThrottlingException", "Rate exceeded")
        if self.faults.internal_error_rate and (
            self._request_rng.random() < self.faults.internal_error_rate
        ):
            self.stats.internal_errors += 1
            raise SimulatorError("InternalFailure", "simulated internal failure", status=500)
        handlers = {
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
            "CreateProcessingJob": self._create_processing_job,
            "DescribeProcessingJob": self._describe_processing_job,
            "ListProcessingJobs": self._list_processing_jobs,
            "StopProcessingJob": self._stop_processing_job,
        }
        handler = handlers.get(operation)
        if handler is None:
            raise SimulatorError("UnknownOperationException", f"{operation} is not simulated")
        return handler(body)

    # --- operations ----------------------------------------------------------------------

    def _create_processing_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.processing.create(body)

    def _describe_processing_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.processing.describe(body)

    def _list_processing_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.processing.list(body)

    def _stop_processing_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.processing.stop(body)

    def create_training_job(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("TrainingJobName")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise SimulatorError(
                "ValidationException",
                f"Value {name!r} at 'trainingJobName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                + NAME_PATTERN.pattern,
            )
        self.stats.create_requests[name] += 1
        existing = self._find(name)
        if existing is not None:
            raise SimulatorError(
                "ResourceInUse",
                "Training job names must be unique within an AWS account and region, and a "
                f"training job with this name already exists ({existing.arn})",
            )
        resources = body.get("ResourceConfig") or {}
        instance_type = resources.get("InstanceType")
        if not isinstance(instance_type, str) or not instance_type:
            raise SimulatorError("ValidationException", "ResourceConfig.InstanceType is required")
        if not body.get("RoleArn"):
            raise SimulatorError("ValidationException", "RoleArn is required")
        count = int(resources.get("InstanceCount") or 1)
        now = self.clock.now()
        quota = self.faults.quota(instance_type)
        if quota is not None:
            in_use = self._instances_in_use(instance_type, now)
            if in_use + count > quota:
                raise SimulatorError(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{instance_type} for training job usage' "
                    f"is {quota} Instances, with current utilization of {in_use} Instances and "
                    f"a request delta of {count} Instances. Please use AWS Service Quotas to "
                    "request an increase for this quota.",
                )
        job = self._new_job(name, body, instance_type, count, now)
        self.jobs[name.lower()] = job
        self._index(job)
        self.stats.created[name] += 1
        self._timeline_drawn(job)
        return {"TrainingJobArn": job.arn}

    def describe_training_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._require(body.get("TrainingJobName"))
        return self.description(job, self.clock.now())

    def description(self, job: SimJob, now: datetime) -> dict[str, Any]:
        """What DescribeTrainingJob answers about `job` at time `now` (datetimes as such)."""
        state = job.state(now)
        out: dict[str, Any] = {
            "TrainingJobName": job.name,
            "TrainingJobArn": job.arn,
            "TrainingJobStatus": state.status,
            "SecondaryStatus": state.secondary,
            "CreationTime": job.created,
            "LastModifiedTime": state.at,
            "AlgorithmSpecification": job.request.get("AlgorithmSpecification", {}),
            "RoleArn": job.request.get("RoleArn", ""),
            "ResourceConfig": job.request.get("ResourceConfig", {}),
            "StoppingCondition": job.request.get("StoppingCondition", {}),
            "HyperParameters": job.request.get("HyperParameters", {}),
            "SecondaryStatusTransitions": [
                {"Status": c.secondary, "StartTime": c.at} for c in job.timeline if c.at <= now
            ],
        }
        if job.request.get("OutputDataConfig"):
            out["OutputDataConfig"] = job.request["OutputDataConfig"]
        if state.failure_reason:
            out["FailureReason"] = state.failure_reason
        if job.training_start is not None and job.training_start <= now:
            out["TrainingStartTime"] = job.training_start
        if state.status in _TERMINAL:
            out["TrainingEndTime"] = state.at
            start = job.training_start
            if start is not None and start <= state.at:
                seconds = math.ceil((state.at - start).total_seconds() * job.speedup)
                out["TrainingTimeInSeconds"] = seconds
                out["BillableTimeInSeconds"] = seconds * job.instance_count
            if state.status == "Completed" and job.model_artifacts:
                out["ModelArtifacts"] = {"S3ModelArtifacts": job.model_artifacts}
        return out

    def list_training_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        max_results = int(body.get("MaxResults") or 10)
        if not 1 <= max_results <= _MAX_RESULTS:
            raise SimulatorError(
                "ValidationException", f"MaxResults must be within 1..100, got {max_results}"
            )
        sort_by = body.get("SortBy") or "CreationTime"
        descending = (body.get("SortOrder") or "Descending") == "Descending"
        primary = _SORT_KEYS.get(sort_by)
        if primary is None:
            raise SimulatorError("ValidationException", f"SortBy {sort_by!r} is not valid")

        def key(row: tuple[SimJob, Change]) -> tuple[Any, str]:
            return (primary(row), row[0].name)

        token = body.get("NextToken")
        listing_id = uuid.uuid4().hex
        kept = None
        if token:
            after, listing_id = _decode_token(token)
            # What the previous page left, already in order and starting right after it.
            kept = self._listings.pop(listing_id, None)
        if kept is not None:
            rows = kept
        else:
            rows = self._listing(now, body)
            if token:  # the snapshot is gone: list again and resume after the last name seen
                rows = [r for r in rows if (key(r) < after if descending else key(r) > after)]
            rows.sort(key=key, reverse=descending)
        page = rows[:max_results]
        if len(rows) > max_results:
            self._listings[listing_id] = rows[max_results:]
            while len(self._listings) > _LISTINGS_KEPT:
                self._listings.popitem(last=False)
        out: dict[str, Any] = {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": job.name,
                    "TrainingJobArn": job.arn,
                    "CreationTime": job.created,
                    "LastModifiedTime": state.at,
                    "TrainingJobStatus": state.status,
                    "SecondaryStatus": state.secondary,
                    **({"TrainingEndTime": state.at} if state.status in _TERMINAL else {}),
                }
                for job, state in page
            ]
        }
        if len(rows) > max_results:
            out["NextToken"] = _encode_token(key(page[-1]), listing_id)
        return out

    def _listing(self, now: datetime, body: dict[str, Any]) -> list[tuple[SimJob, Change]]:
        rows = []
        for job in self._changed_after(body.get("LastModifiedTimeAfter")):
            if job.created <= now:
                state = job.state(now)
                if self._listed(job, state, body):
                    rows.append((job, state))
        return rows

    def stop_training_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._require(body.get("TrainingJobName"))
        now = self.clock.now()
        state = job.state(now)
        if state.status in _TERMINAL:
            self.stats.stops_after_end[job.name] += 1
            raise SimulatorError(
                "ValidationException",
                f"The request was rejected because the training job is in status {state.status}.",
            )
        self.stats.stop_requests[job.name] += 1
        if state.status == "Stopping":
            return {}
        stopped_at = now + timedelta(seconds=self.faults.stop_s / job.speedup)
        self._unindex(job)
        job.timeline = [c for c in job.timeline if c.at <= now] + [
            Change(now, "Stopping", "Stopping"),
            Change(stopped_at, "Stopped", "Stopped"),
        ]
        self._index(job)
        self._timeline_drawn(job)
        return {}

    # --- helpers -------------------------------------------------------------------------

    def _timeline_drawn(self, job: SimJob) -> None:
        for listener in self.timeline_listeners:
            listener(job)

    def _find(self, name: object) -> SimJob | None:
        # SageMaker compares names without regard to case.
        return self.jobs.get(name.lower()) if isinstance(name, str) else None

    def _require(self, name: object) -> SimJob:
        job = self._find(name)
        if job is None:
            # What the real service answers for an unknown job.
            raise SimulatorError("ValidationException", "Requested resource not found.")
        return job

    def peak_instances_in_use(self) -> dict[str, int]:
        """The most instances of each type ever in use at once (a job uses its instances from
        its creation to its end), from every job's timeline: what an account quota, or
        stoker's caps, must never have been below."""
        moments: dict[str, list[tuple[float, int]]] = {}
        for job in self.jobs.values():
            ends = [change.at for change in job.timeline if change.status in _TERMINAL]
            # An end sorts before a start at the same moment: those two never overlap.
            moments.setdefault(job.instance_type, []).append(
                (job.created.timestamp(), job.instance_count)
            )
            if ends:
                moments[job.instance_type].append((ends[0].timestamp(), -job.instance_count))
        peaks: dict[str, int] = {}
        for instance_type, changes in moments.items():
            in_use = peak = 0
            for _, delta in sorted(changes):
                in_use += delta
                peak = max(peak, in_use)
            peaks[instance_type] = peak
        return peaks

    def _instances_in_use(self, instance_type: str, now: datetime) -> int:
        return sum(
            job.instance_count
            for job in self.jobs.values()
            if job.instance_type == instance_type and job.state(now).status in _ACTIVE
        )

    def _changed_after(self, bound: Any) -> Iterable[SimJob]:
        """Every job that can have changed after `bound` (epoch seconds; None: every job)."""
        if bound is None:
            return self.jobs.values()
        first = bisect.bisect_right(self._by_last_change, (float(bound), _AFTER_EVERY_KEY))
        return [self.jobs[key] for _, key in self._by_last_change[first:]]

    def _index(self, job: SimJob) -> None:
        bisect.insort(self._by_last_change, _last_change_entry(job))

    def _unindex(self, job: SimJob) -> None:
        entry = _last_change_entry(job)
        at = bisect.bisect_left(self._by_last_change, entry)
        if at < len(self._by_last_change) and self._by_last_change[at] == entry:
            del self._by_last_change[at]

    def _listed(self, job: SimJob, state: Change, body: dict[str, Any]) -> bool:
        status = body.get("StatusEquals")
        if status and state.status != status:
            return False
        contains = body.get("NameContains")
        if contains and str(contains).lower() not in job.name.lower():
            return False
        bounds = (
            ("LastModifiedTimeAfter", state.at, 1),
            ("LastModifiedTimeBefore", state.at, -1),
            ("CreationTimeAfter", job.created, 1),
            ("CreationTimeBefore", job.created, -1),
        )
        for field_name, value, sign in bounds:
            bound = body.get(field_name)
            if bound is None:
                continue
            delta = value.timestamp() - float(bound)
            if delta * sign <= 0:
                return False
        return True

    def _new_job(
        self, name: str, body: dict[str, Any], instance_type: str, count: int, now: datetime
    ) -> SimJob:
        timeline, start = self._timeline(name, body, instance_type, now)
        output = (body.get("OutputDataConfig") or {}).get("S3OutputPath")
        artifacts = f"{str(output).rstrip('/')}/{name}/output/model.tar.gz" if output else None
        arn = (
            f"arn:aws:sagemaker:{self.faults.region}:{self.faults.account_id}:"
            f"training-job/{name.lower()}"
        )
        return SimJob(
            name=name,
            arn=arn,
            request=body,
            instance_type=instance_type,
            instance_count=count,
            speedup=self.faults.speedup,
            timeline=timeline,
            training_start=start,
            model_artifacts=artifacts,
        )

    def _timeline(
        self, name: str, body: dict[str, Any], instance_type: str, now: datetime
    ) -> tuple[list[Change], datetime | None]:
        """The job's whole future and its training start (None: it never got instances)."""
        f = self.faults
        # Seeded by name, so a job's fate does not depend on the order requests arrive in.
        rng = random.Random(f"{f.seed}:{name}")
        scale = 1.0 / f.speedup

        def at(simulated_s: float) -> datetime:
            return now + timedelta(seconds=simulated_s * scale)

        if f.duration.kind == "instant":
            startup, training = 0.0, 0.0
        elif f.duration.kind == "uniform":
            startup, training = f.startup_s, rng.uniform(f.duration.low_s, f.duration.high_s)
        else:
            startup, training = f.startup_s, f.duration.seconds
        draw = rng.random()
        timeline = [Change(now, "InProgress", "Starting")]
        if startup > 0:
            timeline.append(Change(at(startup * 0.5), "InProgress", "LaunchingMLInstances"))
        capacity_rate = f.capacity_rate(instance_type)
        if draw < capacity_rate:
            timeline.append(Change(at(startup), "Failed", "Failed", CAPACITY_REASON))
            return timeline, None
        start = at(startup)
        if startup > 0:
            timeline.append(Change(start, "InProgress", "Training"))
        # The same hyperparameter the bundled training script obeys, for deterministic tests.
        requested = (body.get("HyperParameters") or {}).get("fail_with")
        if requested or draw < capacity_rate + f.algorithm_error_rate:
            reason = f"AlgorithmError: {requested}" if requested else ALGORITHM_REASON
            timeline.append(Change(at(startup + training * 0.5), "Failed", "Failed", reason))
        else:
            timeline.append(Change(at(startup + training), "Completed", "Completed"))
        return timeline, start


def _encode_token(key: tuple[Any, str], listing_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([*key, listing_id]).encode()).decode()


def _decode_token(token: str) -> tuple[tuple[Any, str], str]:
    """The sort key of the last row served, and the listing it belongs to."""
    try:
        primary, name, listing_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise SimulatorError("ValidationException", "NextToken is not valid") from exc
    return (primary, str(name)), str(listing_id)
