"""The jobs API on Lambda (API Gateway HTTP API, payload 2.0) against DynamoDB Local: the
caller is the owner, answers match the HTTP API's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stoker.app.aws_lambda import submit
from stoker.app.aws_lambda.host import LambdaHost
from tests.deploy.support import answer, http_event, training_request

pytestmark = pytest.mark.integration

ALICE = {"sub": "alice"}
BOB = {"sub": "bob"}


@pytest.fixture
def host(hosts: Callable[..., LambdaHost]) -> LambdaHost:
    return hosts(with_backend=False)


def call(host: LambdaHost, route: str, **kwargs: Any) -> tuple[int, Any]:
    return answer(submit.handle(host, http_event(route, **kwargs), None))


def spec(job_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"training": training_request(job_id or "any"), **extra}
    if job_id is not None:
        body["job_id"] = job_id
    return body


def test_submit_makes_the_caller_the_owner_and_is_idempotent_by_job_id(host: LambdaHost) -> None:
    """A JWT caller's submission is stored as theirs (201); the same job id again is the same
    job (200, created false)."""
    status, body = call(host, "POST /v1/jobs", body=spec("train-1"), claims=ALICE)
    assert status == 201
    assert body["created"] is True
    assert body["job"]["owner"] == "alice"
    assert body["job"]["status"] == "New"

    status, body = call(host, "POST /v1/jobs", body=spec("train-1"), claims=ALICE)
    assert (status, body["created"], body["job"]["job_id"]) == (200, False, "train-1")


def test_a_submission_for_someone_else_is_refused_naming_the_owner_field(host: LambdaHost) -> None:
    status, body = call(host, "POST /v1/jobs", body=spec(owner="bob"), claims=ALICE)
    assert status == 403
    assert body["problems"] == [{"field": "owner", "problem": "must be 'alice' or left out"}]


def test_invalid_specs_and_bodies_name_each_bad_field(host: LambdaHost) -> None:
    """422 with the field paths, like the HTTP API; nothing is stored."""
    status, body = call(
        host, "POST /v1/jobs", body={"training": {}, "priority": 1000}, claims=ALICE
    )
    assert status == 422
    fields = {p["field"] for p in body["problems"]}
    assert {"training", "priority"} <= fields

    status, body = call(host, "POST /v1/jobs", body="{not json", claims=ALICE)
    assert status == 422
    assert body["problems"][0]["field"] == "<body>"

    status, body = call(host, "GET /v1/jobs", query={"status": "Sleeping"}, claims=ALICE)
    assert status == 422
    assert body["problems"][0]["field"] == "status"

    status, body = call(host, "GET /v1/jobs", claims=ALICE)
    assert (status, body["items"]) == (200, [])


def test_callers_see_and_stop_only_their_own_jobs(host: LambdaHost) -> None:
    call(host, "POST /v1/jobs", body=spec("a-1"), claims=ALICE)
    call(host, "POST /v1/jobs", body=spec("b-1"), claims=BOB)

    status, body = call(host, "GET /v1/jobs", claims=ALICE)
    assert status == 200
    assert [job["job_id"] for job in body["items"]] == ["a-1"]
    assert call(host, "GET /v1/jobs", query={"owner": "bob"}, claims=ALICE)[0] == 403

    assert call(host, "GET /v1/jobs/{job_id}", job_id="b-1", claims=ALICE)[0] == 404
    assert call(host, "POST /v1/jobs/{job_id}/stop", job_id="b-1", claims=ALICE)[0] == 404
    status, job = call(host, "GET /v1/jobs/{job_id}", job_id="a-1", claims=ALICE)
    assert (status, job["job_id"]) == (200, "a-1")

    status, history = call(host, "GET /v1/jobs/{job_id}/history", job_id="a-1", claims=ALICE)
    assert status == 200
    assert [line["to_status"] for line in history] == ["New"]


def test_stopping_a_new_job_ends_it_and_stopping_again_is_a_conflict(host: LambdaHost) -> None:
    call(host, "POST /v1/jobs", body=spec("s-1"), claims=ALICE)
    status, job = call(host, "POST /v1/jobs/{job_id}/stop", job_id="s-1", claims=ALICE)
    assert (status, job["status"]) == (200, "Stopped")
    status, body = call(host, "POST /v1/jobs/{job_id}/stop", job_id="s-1", claims=ALICE)
    assert (status, body["status"]) == (409, "Stopped")


def test_iam_callers_own_jobs_under_their_principal(host: LambdaHost) -> None:
    """SigV4 through IAM: a user is its name; an assumed role is `<role>/<session>`."""
    role = "arn:aws:sts::123456789012:assumed-role/Scientists/alice"
    status, body = call(host, "POST /v1/jobs", body=spec("iam-1"), user_arn=role)
    assert (status, body["job"]["owner"]) == (201, "Scientists/alice")
    user = "arn:aws:iam::123456789012:user/teams/search/carol"
    status, body = call(host, "POST /v1/jobs", body=spec("iam-2"), user_arn=user)
    assert (status, body["job"]["owner"]) == (201, "carol")


def test_requests_without_an_authenticated_caller_are_refused(host: LambdaHost) -> None:
    assert call(host, "POST /v1/jobs", body=spec())[0] == 401
    status, body = call(host, "POST /v1/jobs", body=spec(), claims={"email": "a@example.com"})
    assert status == 403
    assert "'sub'" in body["error"]
