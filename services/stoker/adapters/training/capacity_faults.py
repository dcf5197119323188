"""Injected capacity shortages around any training backend (for demos and drills).

A chosen share of training-job names "fail to get capacity": instead of starting, the job
is reported Failed with SageMaker's CapacityError reason, as SageMaker does when it cannot
provision the instance type. The choice is a hash of the name and a seed, so the same
attempt gets the same fate after a restart, and a retry (a new name) may get capacity.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from stoker.core.clock import Clock, SystemClock
from stoker.core.failures import CAPACITY_REASON
from stoker.ports.training import (
    TrainingBackend,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobStatus,
    TrainingJobSummary,
)


class CapacityFaults:
    """A TrainingBackend that forwards to `inner` except for names picked to lack capacity."""

    def __init__(
        self, inner: TrainingBackend, *, rate: float, seed: int = 0, clock: Clock | None = None
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be within 0..1, got {rate}")
        self._inner = inner
        self._rate = rate
        self._seed = seed
        self._clock = clock or SystemClock()
        self._failed: dict[str, TrainingJobDescription] = {}
        self.calls: Counter[str] = inner.calls  # one count of API calls, shared with `inner`

    @property
    def injected(self) -> int:
        return len(self._failed)

    def lacks_capacity(self, name: str) -> bool:
        digest = hashlib.sha256(f"{self._seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self._rate

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def create_training_job(self, request: dict[str, Any]) -> str:
        name = str(request["TrainingJobName"])
        if not self.lacks_capacity(name):
            return await self._inner.create_training_job(request)
        self.calls["CreateTrainingJob"] += 1
        if name in self._failed:
            raise TrainingJobAlreadyExists(name)
        now = self._clock.now()
        self._failed[name] = TrainingJobDescription(
            name=name,
            arn=f"arn:aws:sagemaker:local:000000000000:training-job/{name}",
            status=TrainingJobStatus.FAILED,
            secondary_status="Failed",
            failure_reason=CAPACITY_REASON,
            creation_time=now,
            last_modified_time=now,
            training_end_time=now,
            billable_seconds=0,
            instance_type=request.get("ResourceConfig", {}).get("InstanceType"),
        )
        return self._failed[name].arn

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        if name in self._failed:
            self.calls["DescribeTrainingJob"] += 1
            return self._failed[name]
        return await self._inner.describe_training_job(name)

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        found = await self._inner.list_training_jobs(
            status_equals=status_equals,
            last_modified_time_after=last_modified_time_after,
            name_contains=name_contains,
            max_results=max_results,
            before_page=before_page,
        )
        for d in self._failed.values():
            if status_equals not in (None, d.status):
                continue
            if last_modified_time_after and d.last_modified_time <= last_modified_time_after:
                continue
            if name_contains and name_contains not in d.name:
                continue
            found.append(
                TrainingJobSummary(d.name, d.status, d.last_modified_time, d.creation_time)
            )
        return found

    async def stop_training_job(self, name: str) -> None:
        if name in self._failed:
            return
        await self._inner.stop_training_job(name)

    # Processing jobs pass through: the injected shortages are of training capacity.

    async def create_processing_job(self, request: dict[str, Any]) -> str:
        return await self._inner.create_processing_job(request)

    async def describe_processing_job(self, name: str) -> TrainingJobDescription:
        return await self._inner.describe_processing_job(name)

    async def list_processing_jobs(
        self,
        *,
        last_modified_time_after: datetime | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        return await self._inner.list_processing_jobs(
            last_modified_time_after=last_modified_time_after, before_page=before_page
        )

    async def stop_processing_job(self, name: str) -> None:
        await self._inner.stop_processing_job(name)
