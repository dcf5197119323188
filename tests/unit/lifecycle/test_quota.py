"""Per-team quotas on jobs in flight: counted through the store's team listing, refused
with the quota named, resubmissions of an existing job always let through."""

from __future__ import annotations

import pytest

from stoker.core.job import JobStatus
from stoker.core.spec import JobSpec
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.quota import (
    TeamLimits,
    TeamQuota,
    TeamQuotaExceeded,
    count_in_flight,
)
from tests.unit.lifecycle.conftest import World, spec
from tests.unit.lifecycle.fakes import FakeTeamJobs


async def test_only_the_teams_unfinished_jobs_count() -> None:
    """Jobs of other teams and jobs that ended do not count; every live status does."""
    jobs = FakeTeamJobs()
    for status in (JobStatus.NEW, JobStatus.IN_PROGRESS, JobStatus.RETRY_SCHEDULED,
                   JobStatus.STOPPING):  # fmt: skip
        jobs.add("search", status)
    jobs.add("search", JobStatus.COMPLETED, 5)
    jobs.add("search", JobStatus.FAILED, 5)
    jobs.add("ads", JobStatus.NEW, 5)
    assert await count_in_flight(jobs, "search", at_most=100) == 4


async def test_counting_stops_at_the_quota() -> None:
    """A team far over its quota costs no more reads than the quota itself."""
    jobs = FakeTeamJobs(page_size=2)
    jobs.add("search", JobStatus.NEW, 30)
    jobs.add("search", JobStatus.LAUNCHED, 30)
    assert await count_in_flight(jobs, "search", at_most=5) == 5
    assert jobs.items_read == 5


async def test_a_team_at_its_quota_is_refused_naming_the_setting() -> None:
    """At the quota: TeamQuotaExceeded naming the team, the number and the setting. An
    override replaces the default for its team; 0 means no quota."""
    jobs = FakeTeamJobs()
    jobs.add("search", JobStatus.NEW, 3)
    jobs.add("ads", JobStatus.NEW, 3)
    jobs.add("infra", JobStatus.NEW, 50)
    quota = TeamQuota(TeamLimits(3, {"ads": 4, "infra": 0}), jobs)
    with pytest.raises(TeamQuotaExceeded) as caught:
        await quota.admit("search")
    message = str(caught.value)
    assert "team 'search' already has 3 jobs in flight" in message
    assert "STOKER_TEAM_MAX_IN_FLIGHT" in message
    await quota.admit("ads")
    await quota.admit("infra")
    await quota.admit("newcomers")
    jobs.add("ads", JobStatus.LAUNCHING)
    with pytest.raises(TeamQuotaExceeded, match=r"OVERRIDES\['ads'\]"):
        await quota.admit("ads")


async def test_submit_refuses_past_the_quota_and_stores_nothing(world: World) -> None:
    """JobService.submit checks the quota before the store write: a refused job is not
    stored; the same job id submitted again after it exists is answered, not refused."""
    jobs = FakeTeamJobs(world.store)
    service = JobService(world.transitioner, world.clock, quota=TeamQuota(TeamLimits(1), jobs))
    job, created = await service.submit(JobSpec.model_validate(spec("job-1")), team="search")
    assert created
    jobs.jobs[job.job_id] = ("search", job.status)  # the store's team index, as it will be
    with pytest.raises(TeamQuotaExceeded):
        await service.submit(JobSpec.model_validate(spec("job-2")), team="search")
    assert [j.job_id for j in (await world.store.list_jobs()).items] == ["job-1"]
    again, created = await service.submit(JobSpec.model_validate(spec("job-1")), team="search")
    assert (again.job_id, created) == ("job-1", False)


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be >= 0, got -1"):
        TeamLimits(-1)
    with pytest.raises(ValueError, match="overrides must be >= 0"):
        TeamLimits(1, {"ads": -1})
