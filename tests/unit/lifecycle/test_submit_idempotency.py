"""One submit is one job: the SDK makes the job id when the spec has none and retries a
lost answer with it; the same id with another spec is refused 409 naming what differs."""

from __future__ import annotations

import json

import httpx
import pytest

from stoker.client import ApiError, AsyncClient, Client
from stoker.core.retry import RetryPolicy
from tests.unit.lifecycle.conftest import Api, World, spec

NO_WAIT = RetryPolicy(initial_delay_s=0, multiplier=1, max_delay_s=0, jitter=0, max_attempts=3)


class AnswerLostOnce(httpx.AsyncBaseTransport):
    """Delivers every request to the app, but the first POST's answer never arrives (a
    timeout after the server did the work)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.posted: list[dict[str, object]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.posted.append(json.loads(request.content))
            if len(self.posted) == 1:
                await response.aclose()
                raise httpx.ReadTimeout("answer lost", request=request)
        return response


async def test_a_retried_submit_after_a_timeout_is_one_job(world: World, api: Api) -> None:
    """A spec without a job id: the SDK makes one, the first answer is lost, the retry
    carries the same id and finds the job. One job stored, reported as created."""
    body = spec()
    del body["job_id"]
    transport = AnswerLostOnce(httpx.ASGITransport(app=api.app))
    async with AsyncClient("http://t", transport=transport, token=api.token) as client:
        submitted = await client.submit(body, retry=NO_WAIT)
    stored = (await world.store.list_jobs()).items
    assert [job.job_id for job in stored] == [submitted.job.job_id]
    assert submitted.created is True
    assert [p["job_id"] for p in transport.posted] == [submitted.job.job_id] * 2
    assert "job_id" not in body  # the caller's spec is left as it was


def test_the_blocking_client_retries_with_the_same_id() -> None:
    """The blocking SDK does the same: a 503 then a timeout are retried, every try with the
    one job id it made."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        seen.append(payload["job_id"])
        if len(seen) == 1:
            return httpx.Response(503, json={"error": "temporarily unavailable"})
        if len(seen) == 2:
            raise httpx.ConnectTimeout("no answer", request=request)
        return _accepted(payload, created=False)

    body = spec()
    del body["job_id"]
    with Client("http://t", transport=httpx.MockTransport(handler)) as client:
        submitted = client.submit(body, retry=NO_WAIT)
    assert len(seen) == 3
    assert len(set(seen)) == 1
    assert submitted.job.job_id == seen[0]
    assert submitted.created is True


class Counting(httpx.AsyncBaseTransport):
    """The app's transport, remembering the job id of every POST."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.posted_ids: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posted_ids.append(json.loads(request.content)["job_id"])
        return await self.inner.handle_async_request(request)


async def test_a_given_job_id_is_kept_and_a_refusal_is_not_retried(world: World, api: Api) -> None:
    """The caller's own id is sent as it is; a 422 is an answer, so it is not retried."""
    transport = Counting(httpx.ASGITransport(app=api.app))
    async with AsyncClient("http://t", transport=transport, token=api.token) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit(spec(job_id="mine", priority=1000), retry=NO_WAIT)
        assert caught.value.status_code == 422
        submitted = await client.submit(spec(job_id="mine"), retry=NO_WAIT)
    assert transport.posted_ids == ["mine", "mine"]
    assert submitted.job.job_id == "mine"
    assert submitted.created is True


async def test_the_same_id_with_another_spec_is_409_naming_the_differences(
    world: World, api: Api
) -> None:
    """Resubmitting a job id with a different spec answers 409 listing each field that
    differs; the stored job is unchanged. The same spec again is still 200."""
    http = api.http()
    first = spec()
    assert (await http.post("/v1/jobs", json=first)).status_code == 201
    changed = spec(priority=5)
    changed["training"]["HyperParameters"] = {"lr": "0.1"}
    changed["training"]["ResourceConfig"]["InstanceCount"] = 2
    response = await http.post("/v1/jobs", json=changed)
    assert response.status_code == 409
    fields = [p["field"] for p in response.json()["problems"]]
    assert fields == [
        "priority",
        "training.HyperParameters",
        "training.ResourceConfig.InstanceCount",
    ]
    assert (await world.store.get("job-1")).priority == 0
    assert (await http.post("/v1/jobs", json=first)).status_code == 200
    async with AsyncClient(
        "http://t", transport=httpx.ASGITransport(app=api.app), token=api.token
    ) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit(changed, retry=NO_WAIT)
    assert caught.value.status_code == 409
    assert "priority" in caught.value.problems


def _accepted(payload: dict[str, str], *, created: bool) -> httpx.Response:
    """The API's answer to a submit it took: the job as stored."""
    job = {
        "job_id": payload["job_id"],
        "owner": payload["owner"],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "spec": payload,
    }
    return httpx.Response(201 if created else 200, json={"created": created, "job": job})


def _answer_after(refusals: list[httpx.Response], seen: list[str]) -> httpx.MockTransport:
    """A server that answers each refusal in turn, then accepts the job."""

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        seen.append(payload["job_id"])
        if len(seen) <= len(refusals):
            return refusals[len(seen) - 1]
        return _accepted(payload, created=True)

    return httpx.MockTransport(handler)


def test_a_submit_over_the_callers_rate_is_sent_again_after_the_wait_asked() -> None:
    """429 with Retry-After (a rate limit): the SDK waits as asked (capped by the policy)
    and sends the same job again."""
    seen: list[str] = []
    over_rate = httpx.Response(429, json={"error": "rate-limited"}, headers={"Retry-After": "2"})
    with Client("http://t", transport=_answer_after([over_rate], seen)) as client:
        submitted = client.submit(spec(), retry=NO_WAIT)
    assert submitted.created is True
    assert seen == [submitted.job.job_id] * 2


def test_the_wait_a_429_asks_for_is_on_the_error() -> None:
    seen: list[str] = []
    over_rate = httpx.Response(429, json={"error": "rate-limited"}, headers={"Retry-After": "3"})
    once = RetryPolicy(max_attempts=1)
    transport = _answer_after([over_rate], seen)
    with Client("http://t", transport=transport) as client, pytest.raises(ApiError) as refused:
        client.submit(spec(), retry=once)
    assert refused.value.status_code == 429
    assert refused.value.retry_after_s == 3.0


async def test_a_team_at_its_quota_is_told_at_once() -> None:
    """429 without Retry-After (a team's quota of jobs in flight, which clears only as jobs
    end): not retried."""
    seen: list[str] = []
    at_quota = httpx.Response(429, json={"error": "quota-exceeded"})
    async with AsyncClient("http://t", transport=_answer_after([at_quota], seen)) as client:
        with pytest.raises(ApiError) as refused:
            await client.submit(spec(), retry=NO_WAIT)
    assert refused.value.error == "quota-exceeded"
    assert refused.value.retry_after_s is None
    assert len(seen) == 1
