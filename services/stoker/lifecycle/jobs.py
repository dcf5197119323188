"""Submission and control of jobs: every way in (HTTP, CLI, SDK, event) goes through here.

Team scoping: each call takes the caller's `team`. A job of another team reads exactly like
a job that does not exist (JobNotFound), so an id tells nothing about other teams' work.
`team=None` means every team: an admin's view, or a service's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from stoker.core.clock import Clock
from stoker.core.errors import JobNotFound, StokerError, VersionConflict
from stoker.core.job import DEFAULT_TEAM, JobChange, JobRecord, JobStatus, Transition
from stoker.core.spec import JobSpec
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.store import JobStore, Page


class InvalidJobSpec(StokerError):
    """The submission is malformed. `problems` maps each field path to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class JobIdTaken(StokerError):
    """The job id is another team's job: nothing about that job is told (HTTP 409)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job id {job_id!r} is taken; choose another")
        self.job_id = job_id


class JobAlreadyFinished(StokerError):
    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"job {job.job_id!r} already ended as {job.status.value}")
        self.job = job


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

    async def submit(
        self, spec: JobSpec, *, owner: str | None = None, team: str = DEFAULT_TEAM
    ) -> tuple[JobRecord, bool]:
        """Store a New job of `owner` in `team`: the authenticated caller's name and team
        (the spec may name the same owner, or none); None takes the spec's owner (a
        submission on the bus). The same job id submitted twice by a team is one job:
        (existing, False); another team's job id raises JobIdTaken."""
        owner = _owner_of(spec, owner)
        job_id = spec.job_id or self._new_id()
        now = self._clock.now()
        spec = spec.model_copy(update={"job_id": job_id, "owner": owner})
        job = JobRecord(
            job_id=job_id,
            owner=owner,
            team=team,
            priority=spec.priority,
            spec=spec.model_dump(mode="json", exclude_none=True),
            created_at=now,
            updated_at=now,
            details={"instance_type": spec.training["ResourceConfig"]["InstanceType"]},
        )
        stored, created = await self._t.create(job)
        if stored.team != team:
            raise JobIdTaken(job_id)
        return stored, created

    async def get(self, job_id: str, *, team: str | None = None) -> JobRecord:
        """The job, if it is `team`'s (any team's when None); else JobNotFound."""
        job = await self._store.get(job_id)
        if team is not None and job.team != team:
            raise JobNotFound(job_id)
        return job

    async def history(self, job_id: str, *, team: str | None = None) -> list[Transition]:
        if team is not None:
            await self.get(job_id, team=team)
        return list(await self._store.history(job_id))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        return await self._store.list_jobs(
            status=status, owner=owner, team=team, limit=limit, cursor=cursor
        )

    async def stop(
        self, job_id: str, reason: str = "stopped by request", *, team: str | None = None
    ) -> JobRecord:
        """Stop a job of `team` (any team's when None). Not yet running: Stopped at once.
        Running: Stopping, then the monitor stops the training job. Already ended:
        JobAlreadyFinished (HTTP 409)."""
        for _ in range(5):  # a concurrent transition may win; re-read and decide again
            job = await self.get(job_id, team=team)
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


def _owner_of(spec: JobSpec, caller: str | None) -> str:
    """The job's owner: the caller when known (the spec may only repeat it), else the spec's."""
    if caller is None:
        if spec.owner is None:
            raise InvalidJobSpec({"owner": "required when no token names the submitter"})
        return spec.owner
    if spec.owner is not None and spec.owner != caller:
        raise InvalidJobSpec(
            {"owner": f"the owner is the caller, {caller!r}: leave it out or give that name"}
        )
    return caller


def _ended(status: JobStatus, clock: Clock) -> dict[str, Any]:
    return {"ended_at": clock.now().isoformat()} if status.terminal else {}
