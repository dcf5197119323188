"""Per-team quotas on jobs in flight: a submission that would take a team past its quota of
jobs not yet ended is refused (HTTP 429), naming the quota.

The count comes from the job store (each non-terminal status, filtered by team) and stops
at the quota, so a check reads at most `quota` records. It is a count followed by a write,
not one conditional write: submissions that race each other may all pass while the team is
one short of its quota. The quota bounds a team's share of the platform; the hard limits
per instance type stay with admission control in the launcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stoker.core.errors import JobNotFound
from stoker.core.job import TERMINAL_STATUSES, JobRecord, JobStatus
from stoker.core.ratelimit import OverLimit
from stoker.ports.store import Page

IN_FLIGHT = tuple(s for s in JobStatus if s not in TERMINAL_STATUSES)


class TeamJobs(Protocol):
    """The store queries a quota check makes (the job store satisfies it)."""

    async def get(self, job_id: str) -> JobRecord: ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page: ...


class TeamQuotaExceeded(OverLimit):
    """The team has as many jobs in flight as its quota allows (HTTP 429)."""

    reason = "quota-exceeded"

    def __init__(self, team: str, limit: int, setting: str) -> None:
        super().__init__(
            f"team {team!r} already has {limit} jobs in flight, its quota ({setting}); "
            "submit again when one of them has ended"
        )
        self.team = team
        self.limit = limit
        self.setting = setting


@dataclass(frozen=True, slots=True)
class TeamLimits:
    """How many jobs each team may have in flight; 0 means no quota."""

    max_in_flight: int = 0
    overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-team quotas that replace `max_in_flight` (0: no quota for that team)."""

    def __post_init__(self) -> None:
        if self.max_in_flight < 0:
            raise ValueError(f"max_in_flight must be >= 0, got {self.max_in_flight}")
        negative = {team: n for team, n in self.overrides.items() if n < 0}
        if negative:
            raise ValueError(f"overrides must be >= 0, got {negative}")

    def limit_for(self, team: str) -> tuple[int, str]:
        """The team's quota and the setting it comes from."""
        if team in self.overrides:
            return self.overrides[team], f"STOKER_TEAM_MAX_IN_FLIGHT_OVERRIDES[{team!r}]"
        return self.max_in_flight, "STOKER_TEAM_MAX_IN_FLIGHT"


async def count_in_flight(jobs: TeamJobs, team: str, *, at_most: int) -> int:
    """The team's jobs in a non-terminal status, counted up to `at_most`."""
    count = 0
    for status in IN_FLIGHT:
        cursor: str | None = None
        while count < at_most:
            page = await jobs.list_jobs(
                status=status, team=team, limit=at_most - count, cursor=cursor
            )
            count += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        if count >= at_most:
            return at_most
    return count


class TeamQuota:
    """The check `JobService.submit` makes before a new job is stored."""

    def __init__(self, limits: TeamLimits, jobs: TeamJobs) -> None:
        self.limits = limits
        self._jobs = jobs

    async def admit(self, team: str | None, job_id: str | None = None) -> None:
        """Raise TeamQuotaExceeded when `team` has its quota of jobs in flight.

        A resubmission of a job that exists is no new job and always passes (the submit
        then answers the stored one); the store is read for it only when the quota is full.
        `team` None (a submission with no principal, such as the event intake's) passes.
        """
        if team is None:
            return
        limit, setting = self.limits.limit_for(team)
        if limit == 0 or await count_in_flight(self._jobs, team, at_most=limit) < limit:
            return
        if job_id is not None:
            try:
                await self._jobs.get(job_id)
            except JobNotFound:
                pass
            else:
                return
        raise TeamQuotaExceeded(team, limit, setting)
