"""The processing-job half of the local backend's port (CreateProcessingJob and friends).

A processing job runs as a training job does (one supervised process per instance, the same
slots, stops, MaxRuntime and take-over), in `<work>/_processing/<job>/` with SageMaker
Processing's layout (`processing.py`); what differs is how its request is read, how its
folder is laid out, and that its outputs are uploaded at the end whatever the outcome. The
running itself is the backend's (`local.py`); this mixin holds the port's processing calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from stoker.adapters.training.container import LocalJobRequest
from stoker.adapters.training.local_state import LocalJob
from stoker.adapters.training.processing import parse_processing_request
from stoker.core.job_kind import JobKind
from stoker.ports.training import TrainingJobDescription, TrainingJobSummary


class ProcessingJobs:
    """CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs and StopProcessingJob
    on top of the backend's job runner, which supplies the methods declared here."""

    calls: Counter[str]

    async def _create(self, spec: LocalJobRequest, request: dict[str, Any]) -> str:
        raise NotImplementedError

    def _describe(self, name: str, kind: JobKind) -> TrainingJobDescription:
        raise NotImplementedError

    def _all_jobs(self, kind: JobKind) -> list[LocalJob]:
        raise NotImplementedError

    async def _stop(self, name: str, kind: JobKind) -> None:
        raise NotImplementedError

    async def create_processing_job(self, request: dict[str, Any]) -> str:
        self.calls["CreateProcessingJob"] += 1
        return await self._create(parse_processing_request(request), request)

    async def describe_processing_job(self, name: str) -> TrainingJobDescription:
        self.calls["DescribeProcessingJob"] += 1
        return self._describe(name, JobKind.PROCESSING)

    async def list_processing_jobs(
        self,
        *,
        last_modified_time_after: datetime | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        if before_page is not None:
            await before_page()  # one "page": local processes have no API to page through
        self.calls["ListProcessingJobs"] += 1
        rows = [
            job.summary()
            for job in self._all_jobs(JobKind.PROCESSING)
            if last_modified_time_after is None or job.last_modified > last_modified_time_after
        ]
        rows.sort(key=lambda row: (row.creation_time, row.name), reverse=True)
        return rows

    async def stop_processing_job(self, name: str) -> None:
        self.calls["StopProcessingJob"] += 1
        await self._stop(name, JobKind.PROCESSING)
