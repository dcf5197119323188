"""The `stoker:job-id` tag: added to every CreateTrainingJob request, within SageMaker's limit
of 50 tags, which a submission learns of at once (422 naming `training.Tags`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import FakeClock
from stoker.core.job import JobRecord
from stoker.core.naming import JOB_ID_TAG, MAX_TAGS, tag_problems, with_job_id_tag
from stoker.lifecycle.jobs import InvalidJobSpec, JobService, SubmissionRules, parse_spec
from stoker.lifecycle.launcher import build_request
from stoker.lifecycle.transitions import Transitioner
from tests.unit.lifecycle.conftest import spec


def tags(count: int) -> list[dict[str, str]]:
    return [{"Key": f"team:k{n}", "Value": str(n)} for n in range(count)]


def record(training_tags: list[dict[str, str]]) -> JobRecord:
    body = spec("exp-1")
    body["training"]["Tags"] = training_tags
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return JobRecord(job_id="exp-1", owner="ana", spec=body, created_at=now, updated_at=now)


def test_the_launch_request_carries_the_users_tags_and_stokers() -> None:
    request = build_request(record(tags(2)), "exp-1-1", "ml.m5.large")
    assert request["Tags"] == [*tags(2), {"Key": JOB_ID_TAG, "Value": "exp-1"}]


def test_forty_nine_tags_of_ones_own_are_accepted() -> None:
    assert tag_problems({"Tags": tags(MAX_TAGS - 1)}) == {}
    request = build_request(record(tags(MAX_TAGS - 1)), "exp-1-1", "ml.m5.large")
    assert len(request["Tags"]) == MAX_TAGS


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (tags(MAX_TAGS), "at most 49 tags, got 50: SageMaker allows 50"),
        ([{"Key": JOB_ID_TAG, "Value": "mine"}], "is stoker's"),
    ],
)
async def test_a_submission_that_leaves_no_room_is_refused_naming_the_field(
    given: list[dict[str, str]], problem: str
) -> None:
    """Refused at submit, not by SageMaker at launch; nothing is stored."""
    bus, store = MemoryBus(), MemoryJobStore()
    await bus.start()
    await store.start()
    jobs = JobService(Transitioner(store, bus), FakeClock(), rules=SubmissionRules())
    body = spec("exp-2")
    body["training"]["Tags"] = given
    with pytest.raises(InvalidJobSpec) as info:
        await jobs.submit(parse_spec(body))
    assert list(info.value.problems) == ["training.Tags"]
    assert problem in info.value.problems["training.Tags"]
    assert (await jobs.list_jobs()).items == []


def test_a_job_stored_before_the_check_still_launches() -> None:
    """Fifty tags already (a job accepted earlier): the tag is left out rather than the
    launch refused; a user tag under stoker's key is replaced by the real job id."""
    assert with_job_id_tag(tags(MAX_TAGS), "exp-1") == tags(MAX_TAGS)
    replaced = with_job_id_tag([{"Key": JOB_ID_TAG, "Value": "other"}], "exp-1")
    assert replaced == [{"Key": JOB_ID_TAG, "Value": "exp-1"}]
