"""Submission and control of jobs: every way in (HTTP, CLI, SDK, event) goes through here.

Records and transitions leave here in their public view: secrets in the spec (a raw
notification URL, an `Environment` entry named like a credential), failure reasons and
details redacted (stoker.core.redaction). The store keeps them as submitted.

Team scoping: each call takes the caller's `team`. A job of another team reads exactly like
a job that does not exist (JobNotFound), so an id tells nothing about other teams' work.
`team=None` means every team: an admin's view, or a service's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from stoker.core.auth import DEFAULT_TEAM
from stoker.core.clock import Clock
from stoker.core.errors import JobNotFound, StokerError, VersionConflict
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.job_kind import JobKind
from stoker.core.naming import tag_problems
from stoker.core.notify_rules import NotifyRules
from stoker.core.policy import Policy, Violation
from stoker.core.redaction import redact, redact_text
from stoker.core.spec import JobSpec
from stoker.core.tracecontext import current_traceparent
from stoker.lifecycle.job_filters import JobFilter, filtered_page
from stoker.lifecycle.quota import TeamQuota
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.store import JobStore, Page, Trends
from stoker.ports.training import TrainingRequestValidator
from stoker.telemetry import tracing


class InvalidJobSpec(StokerError):
    """The submission is malformed. `problems` maps each field path to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class PolicyViolation(StokerError):
    """The submission is well formed, but the team's policy does not allow it (HTTP 403).
    `violations` names each broken rule and the field it concerns."""

    def __init__(self, team: str, violations: list[Violation]) -> None:
        super().__init__(
            f"refused by the policy of team {team!r}: "
            + "; ".join(f"{v.field}: {v.problem} [{v.rule}]" for v in violations)
        )
        self.team = team
        self.violations = violations


@dataclass(frozen=True)
class SubmissionRules:
    """What a submission must pass before it is stored.

    validator: checks `training` against the CreateTrainingJob shape (None: not checked).
    processing_validator: checks `processing` against the CreateProcessingJob shape (None:
        not checked).
    policy: the admin's policy; the built-in one limits nothing but local runs.
    local_runs: jobs run as local processes, so the policy's `local` rules apply too.
    """

    validator: TrainingRequestValidator | None = None
    processing_validator: TrainingRequestValidator | None = None
    policy: Policy = field(default_factory=Policy)
    local_runs: bool = False

    def check(self, spec: JobSpec, team: str) -> None:
        """Raise InvalidJobSpec for a malformed request (422), then PolicyViolation for one
        the team may not make (403)."""
        field = spec.job_kind.request_field
        problems = tag_problems(spec.request, field)
        validator = (
            self.validator if spec.job_kind is JobKind.TRAINING else self.processing_validator
        )
        if validator is not None:
            found = validator.problems(spec.request)
            problems |= {f"{field}.{k}" if k else field: v for k, v in found.items()}
        if problems:
            raise InvalidJobSpec(problems)
        violations = self.policy.violations(spec, team, local_runs=self.local_runs)
        if violations:
            raise PolicyViolation(team, violations)


class JobIdTaken(StokerError):
    """The job id is another team's job: nothing about that job is told (HTTP 409)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job id {job_id!r} is taken; choose another")
        self.job_id = job_id


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
        rules: SubmissionRules | None = None,
        quota: TeamQuota | None = None,
        notify_rules: NotifyRules | None = None,
    ) -> None:
        self._t = transitioner
        self._store: JobStore = transitioner.store
        self._clock = clock
        self._new_id = new_id
        self.rules = rules or SubmissionRules()
        self._quota = quota
        self._notify_rules = notify_rules or NotifyRules()

    async def submit(
        self, spec: JobSpec, *, owner: str | None = None, team: str = DEFAULT_TEAM
    ) -> tuple[JobRecord, bool]:
        """Store a New job of `owner` in `team`: the authenticated caller's name and team
        (the spec may name the same owner, or none); None takes the spec's owner (a
        submission on the bus). The same job id submitted twice by a team is one job:
        (existing, False); another team's job id raises JobIdTaken.

        The request is checked first against the rules of `team` (`SubmissionRules.check`:
        InvalidJobSpec or PolicyViolation; and its `notify` targets: InvalidJobSpec for a
        secret the team lacks or a raw URL), and nothing is stored. A team at its quota of
        jobs in flight gets TeamQuotaExceeded (HTTP 429)."""
        owner = _owner_of(spec, owner)
        self.rules.check(spec, team)
        problems = self._notify_rules.problems(spec, team)
        if problems:
            raise InvalidJobSpec(problems)
        if self._quota is not None:
            await self._quota.admit(team, spec.job_id)
        job_id = spec.job_id or self._new_id()
        now = self._clock.now()
        spec = spec.model_copy(update={"job_id": job_id, "owner": owner})
        # The job's trace: a child of the submitting event's or request's, else a new one.
        with tracing.span(
            "stoker.job.submit", parent=current_traceparent.get(), attributes={"job.id": job_id}
        ) as traceparent:
            job = JobRecord(
                job_id=job_id,
                owner=owner,
                team=team,
                priority=spec.priority,
                spec=spec.model_dump(mode="json", exclude_none=True),
                created_at=now,
                updated_at=now,
                details={
                    "instance_type": spec.instance_type,
                    "trace_id": traceparent[3:35],
                    "traceparent": traceparent,
                },
            )
            stored, created = await self._t.create(job)
        if stored.team != team:
            raise JobIdTaken(job_id)
        # The same id with another spec is not a retry of this submission: say what differs.
        if not created:
            differences = spec_differences(stored.spec, job.spec)
            if differences:
                raise JobIdConflict(job_id, differences)
        return public_record(stored), created

    async def get(self, job_id: str, *, team: str | None = None) -> JobRecord:
        """The job as answers show it, if it is `team`'s (any team's when None); else
        JobNotFound."""
        return public_record(await self._stored(job_id, team))

    async def stored(self, job_id: str, *, team: str | None = None) -> JobRecord:
        """The job as stored, secrets and all, if it is `team`'s: for work inside the
        process (finding its notifications), never for an answer."""
        return await self._stored(job_id, team)

    async def _stored(self, job_id: str, team: str | None) -> JobRecord:
        """The job as stored (secrets and all), if it is `team`'s; else JobNotFound."""
        job = await self._store.get(job_id)
        if team is not None and job.team != team:
            raise JobNotFound(job_id)
        return job

    async def history(self, job_id: str, *, team: str | None = None) -> list[Transition]:
        if team is not None:
            await self._stored(job_id, team)
        return [public_transition(t) for t in await self._store.history(job_id)]

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        wanted: JobFilter | None = None,
    ) -> Page:
        """Jobs by the store's indexed filters, then by `wanted` (`job_filters`)."""

        async def list_page(at: str | None, size: int) -> Page:
            return await self._store.list_jobs(
                status=status, owner=owner, team=team, limit=size, cursor=at
            )

        page = await filtered_page(list_page, wanted or JobFilter(), limit=limit, cursor=cursor)
        return Page(items=[public_record(job) for job in page.items], next_cursor=page.next_cursor)

    async def trends(self, since: datetime, until: datetime, *, team: str | None = None) -> Trends:
        """The trend counters of `team`'s jobs (every team's when None), by whole UTC day."""
        return await self._store.trends(since, until, team=team)

    async def stop(
        self, job_id: str, reason: str = "stopped by request", *, team: str | None = None
    ) -> JobRecord:
        """Stop a job of `team` (any team's when None). Not yet running: Stopped at once.
        Running: Stopping, then the monitor stops the training job. Already ended:
        JobAlreadyFinished (HTTP 409)."""
        for _ in range(5):  # a concurrent transition may win; re-read and decide again
            job = await self._stored(job_id, team)
            if job.status.terminal:
                raise JobAlreadyFinished(job)
            if job.status is JobStatus.STOPPING:
                return public_record(job)
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
                return public_record(await self._t.move(job, change))
            except VersionConflict:
                continue
        return public_record(await self._store.get(job_id))


def public_record(job: JobRecord) -> JobRecord:
    """`job` as answers show it: spec, details and failure reason with secrets redacted."""
    return job.model_copy(
        update={
            "spec": redact(job.spec),
            "details": redact(job.details),
            "failure_reason": redact_text(job.failure_reason)
            if job.failure_reason is not None
            else None,
        }
    )


def public_transition(transition: Transition) -> Transition:
    """`transition` with its reason redacted."""
    if transition.reason is None:
        return transition
    return transition.model_copy(update={"reason": redact_text(transition.reason)})


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
