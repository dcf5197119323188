"""Submission and control of jobs: every way in (HTTP, CLI, SDK, event) goes through here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from stoker.core.clock import Clock
from stoker.core.errors import StokerError, VersionConflict
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.spec import JobSpec
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.store import JobStore, Page


class InvalidJobSpec(StokerError):
    """The submission is malformed. `problems` maps each field path to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class JobAlreadyFinished(StokerError):
    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"job {job.job_id!r} already ended as {job.status.value}")
        self.job = job


class JobIdConflict(StokerError):
    """A job id submitted again with a different spec. `differences` lists the dotted
    paths of the fields that differ from the stored job's."""

    def __init__(self, job_id: str, differences: list[str]) -> None:
        super().__init__(
            f"job {job_id!r} exists with a different spec (differs in: {', '.join(differences)})"
        )
        self.job_id = job_id
        self.differences = differences


def parse_spec(raw: Any) -> JobSpec:
    """Validate a submission; every bad field is named in InvalidJobSpec.problems."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            problems[where] = err["msg"]
        raise InvalidJobSpec(problems) from exc


class JobService:
    def __init__(
        self,
        transitioner: Transitioner,
        clock: Clock,
        *,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._t = transitioner
        self._store: JobStore = transitioner.store
        self._clock = clock
        self._new_id = new_id

    async def submit(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        """Store a New job. The same job id submitted twice is one job: (existing, False)."""
        job_id = spec.job_id or self._new_id()
        now = self._clock.now()
        spec = spec.model_copy(update={"job_id": job_id})
        job = JobRecord(
            job_id=job_id,
            owner=spec.owner,
            priority=spec.priority,
            spec=spec.model_dump(mode="json", exclude_none=True),
            created_at=now,
            updated_at=now,
            details={"instance_type": spec.training["ResourceConfig"]["InstanceType"]},
        )
        stored, created = await self._t.create(job)
        # The same id with another spec is not a retry of this submission: say what differs.
        if not created:
            differences = spec_differences(stored.spec, job.spec)
            if differences:
                raise JobIdConflict(job_id, differences)
        return stored, created

    async def get(self, job_id: str) -> JobRecord:
        return await self._store.get(job_id)

    async def history(self, job_id: str) -> list[Transition]:
        return list(await self._store.history(job_id))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        return await self._store.list_jobs(status=status, owner=owner, limit=limit, cursor=cursor)

    async def stop(self, job_id: str, reason: str = "stopped by request") -> JobRecord:
        """Stop a job. Not yet running: Stopped at once. Running: Stopping, then the monitor
        stops the training job. Already ended: JobAlreadyFinished (HTTP 409)."""
        for _ in range(5):  # a concurrent transition may win; re-read and decide again
            job = await self._store.get(job_id)
            if job.status.terminal:
                raise JobAlreadyFinished(job)
            if job.status is JobStatus.STOPPING:
                return job
            target = (
                JobStatus.STOPPED
                if job.status in (JobStatus.NEW, JobStatus.RETRY_SCHEDULED)
                else JobStatus.STOPPING
            )
            change = JobChange(
                to_status=target,
                at=self._clock.now(),
                reason=reason,
                details=_ended(target, self._clock),
            )
            try:
                return await self._t.move(job, change)
            except VersionConflict:
                continue
        return await self._store.get(job_id)


def spec_differences(stored: Any, submitted: Any, path: str = "") -> list[str]:
    """Dotted paths where two specs (as JSON) differ, down to the first differing leaf."""
    if isinstance(stored, dict) and isinstance(submitted, dict):
        found: list[str] = []
        for key in sorted(stored.keys() | submitted.keys()):
            where = f"{path}.{key}" if path else str(key)
            if key not in stored or key not in submitted:
                found.append(where)
            else:
                found.extend(spec_differences(stored[key], submitted[key], where))
        return found
    return [] if stored == submitted else [path or "<spec>"]


def _ended(status: JobStatus, clock: Clock) -> dict[str, Any]:
    return {"ended_at": clock.now().isoformat()} if status.terminal else {}
