"""A scriptable TrainingBackend for tests above the port, and the store's team queries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import Clock
from stoker.core.job import JobRecord, JobStatus
from stoker.core.job_kind import JobKind
from stoker.ports.store import JobStore, Page
from stoker.ports.training import (
    TrainingBackendError,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
    TrainingJobSummary,
)


class FakeTrainingBackend:
    """Keeps jobs in a dict; tests move them with `set_status` and queue errors per operation."""

    def __init__(self, clock: Clock) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[str, TrainingJobDescription] = {}
        self.processing: dict[str, TrainingJobDescription] = {}
        """Processing jobs, by name (their own namespace, as in SageMaker)."""
        self.errors: dict[str, list[TrainingBackendError]] = {}
        self.stopped: list[str] = []
        self.described: list[str] = []
        """Names passed to DescribeTrainingJob, in order."""
        self.listing_lag_s = 0.0
        """How long a change takes to show up in listings (SageMaker's listing may lag)."""
        self.listed_rows = 0
        """Summaries returned by every ListTrainingJobs call so far."""
        self._clock = clock

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def fail_next(self, operation: str, *errors: TrainingBackendError) -> None:
        self.errors.setdefault(operation, []).extend(errors)

    def _maybe_raise(self, operation: str) -> None:
        self.calls[operation] += 1
        queued = self.errors.get(operation)
        if queued:
            raise queued.pop(0)

    def set_status(
        self,
        name: str,
        status: TrainingJobStatus,
        *,
        failure_reason: str | None = None,
        billable_seconds: int | None = None,
        model_artifacts: str | None = None,
    ) -> None:
        now = self._clock.now()
        jobs = self.processing if name in self.processing else self.jobs
        old = jobs[name]
        jobs[name] = TrainingJobDescription(
            name=name,
            arn=old.arn,
            status=status,
            secondary_status=status.value,
            failure_reason=failure_reason,
            creation_time=old.creation_time,
            last_modified_time=now,
            training_start_time=old.creation_time,
            training_end_time=now if status.terminal else None,
            billable_seconds=billable_seconds,
            model_artifacts=model_artifacts,
            instance_type=old.instance_type,
        )

    async def create_training_job(self, request: dict[str, Any]) -> str:
        self._maybe_raise("CreateTrainingJob")
        name = request["TrainingJobName"]
        if name in self.jobs:
            raise TrainingJobAlreadyExists(name)
        self.requests.append(request)
        now = self._clock.now()
        self.jobs[name] = TrainingJobDescription(
            name=name,
            arn=f"arn:fake:{name}",
            status=TrainingJobStatus.IN_PROGRESS,
            secondary_status="Starting",
            failure_reason=None,
            creation_time=now,
            last_modified_time=now,
            instance_type=request["ResourceConfig"]["InstanceType"],
        )
        return self.jobs[name].arn

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        self._maybe_raise("DescribeTrainingJob")
        self.described.append(name)
        if name not in self.jobs:
            raise TrainingJobNotFound(name)
        return self.jobs[name]

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        if before_page is not None:
            await before_page()
        self._maybe_raise("ListTrainingJobs")
        visible_until = self._clock.now() - timedelta(seconds=self.listing_lag_s)
        rows = [
            TrainingJobSummary(
                d.name, d.status, d.last_modified_time, d.creation_time, d.training_end_time
            )
            for d in self.jobs.values()
            if (status_equals is None or d.status is status_equals)
            and (
                last_modified_time_after is None or d.last_modified_time > last_modified_time_after
            )
            and (name_contains is None or name_contains in d.name)
            and d.last_modified_time <= visible_until
        ][: max_results or None]
        self.listed_rows += len(rows)
        return rows

    async def stop_training_job(self, name: str) -> None:
        self._maybe_raise("StopTrainingJob")
        if name not in self.jobs:
            raise TrainingJobNotFound(name)
        self.stopped.append(name)

    async def create_processing_job(self, request: dict[str, Any]) -> str:
        self._maybe_raise("CreateProcessingJob")
        name = request["ProcessingJobName"]
        if name in self.processing:
            raise TrainingJobAlreadyExists(name, kind="processing")
        self.requests.append(request)
        now = self._clock.now()
        self.processing[name] = TrainingJobDescription(
            name=name,
            arn=f"arn:fake:processing:{name}",
            status=TrainingJobStatus.IN_PROGRESS,
            secondary_status=None,
            failure_reason=None,
            creation_time=now,
            last_modified_time=now,
            instance_type=request["ProcessingResources"]["ClusterConfig"]["InstanceType"],
        )
        return self.processing[name].arn

    async def describe_processing_job(self, name: str) -> TrainingJobDescription:
        self._maybe_raise("DescribeProcessingJob")
        self.described.append(name)
        if name not in self.processing:
            raise TrainingJobNotFound(name, kind="processing")
        return self.processing[name]

    async def list_processing_jobs(
        self,
        *,
        last_modified_time_after: datetime | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        if before_page is not None:
            await before_page()
        self._maybe_raise("ListProcessingJobs")
        return [
            TrainingJobSummary(
                d.name,
                d.status,
                d.last_modified_time,
                d.creation_time,
                d.training_end_time,
                kind=JobKind.PROCESSING,
            )
            for d in self.processing.values()
            if last_modified_time_after is None or d.last_modified_time > last_modified_time_after
        ]

    async def stop_processing_job(self, name: str) -> None:
        self._maybe_raise("StopProcessingJob")
        if name not in self.processing:
            raise TrainingJobNotFound(name, kind="processing")
        self.stopped.append(name)


class FakeTeamJobs:
    """The store's team queries over a table of (job id -> team, status), served in pages
    of `page_size`; `get` asks the real store given (jobs in the table alone are not
    stored). `items_read` counts the records the listings returned."""

    def __init__(self, store: JobStore | None = None, page_size: int = 2) -> None:
        self.store: JobStore = store or MemoryJobStore()
        self.page_size = page_size
        self.jobs: dict[str, tuple[str, JobStatus]] = {}
        self.items_read = 0

    def add(self, team: str, status: JobStatus, count: int = 1) -> None:
        for _ in range(count):
            self.jobs[f"{team}-{len(self.jobs)}"] = (team, status)

    async def get(self, job_id: str) -> JobRecord:
        return await self.store.get(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        matching = [
            job_id
            for job_id, (t, s) in self.jobs.items()
            if (team is None or t == team) and (status is None or s == status)
        ]
        start = int(cursor or 0)
        taken = matching[start : start + min(limit, self.page_size)]
        self.items_read += len(taken)
        end = start + len(taken)
        # What the quota needs is how many there are; the records are stand-ins.
        at = datetime(2026, 1, 1, tzinfo=UTC)
        items = [
            JobRecord(job_id=job_id, owner="x", spec={}, created_at=at, updated_at=at)
            for job_id in taken
        ]
        return Page(items=items, next_cursor=str(end) if end < len(matching) else None)
