"""The HTTP API and the SDK over it: validation, idempotency, 404, 409, OpenAPI. Every call
carries a submitter token of ana's (team search); tests/security covers who may do what."""

from __future__ import annotations

import httpx
import pytest

from stoker.api.app import create_app
from stoker.auth.tokens import TokenAuthenticator
from stoker.client import ApiError, AsyncClient
from stoker.core.errors import JobNotFound
from stoker.core.job import JobStatus
from tests.support.auth import bearer, mint
from tests.unit.lifecycle.conftest import World, spec


@pytest.fixture
async def token(world: World) -> str:
    return await mint(world.store, "ana", "search", clock=world.clock)


def _app(world: World) -> httpx.ASGITransport:
    app = create_app(world.jobs, TokenAuthenticator(world.store, world.clock))
    return httpx.ASGITransport(app=app)


@pytest.fixture
def http(world: World, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=_app(world), base_url="http://t", headers=bearer(token))


async def test_same_job_id_twice_is_one_job(http: httpx.AsyncClient, world: World) -> None:
    """The first POST answers 201, the second 200 with created=false; one job stored."""
    first = await http.post("/v1/jobs", json=spec())
    second = await http.post("/v1/jobs", json=spec())
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert len((await world.store.list_jobs()).items) == 1


async def test_invalid_spec_names_each_bad_field(http: httpx.AsyncClient, world: World) -> None:
    """422 lists every bad field; nothing is stored."""
    body = spec()
    body["owner"] = ""
    del body["training"]["ResourceConfig"]
    body["priority"] = "high"
    response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"owner", "priority", "training"} <= fields
    assert (await world.store.list_jobs()).items == []


async def test_unknown_job_is_404_and_finished_job_stop_is_409(http: httpx.AsyncClient) -> None:
    """Unknown id: 404. Stopping a stopped job: 409 naming its state."""
    assert (await http.get("/v1/jobs/nope")).status_code == 404
    await http.post("/v1/jobs", json=spec())
    stopped = await http.post("/v1/jobs/job-1/stop")
    assert stopped.json()["status"] == "Stopped"
    again = await http.post("/v1/jobs/job-1/stop")
    assert again.status_code == 409
    assert again.json()["status"] == "Stopped"


async def test_openapi_is_served(http: httpx.AsyncClient) -> None:
    """/openapi.json documents the job endpoints."""
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/history",
        "/v1/jobs/{job_id}/stop",
    } <= set(paths)


async def test_sdk_round_trip(world: World, token: str) -> None:
    """AsyncClient submits, lists by owner and status, reads history and maps errors; the
    job is owned by the token's owner and team."""
    async with AsyncClient("http://t", token=token, transport=_app(world)) as client:
        submitted = await client.submit(spec())
        assert submitted.created
        assert (submitted.job.owner, submitted.job.team) == ("ana", "search")
        page = await client.list_jobs(owner="ana", status=JobStatus.NEW)
        assert [j.job_id for j in page.items] == ["job-1"]
        history = await client.history("job-1")
        assert [h.to_status for h in history] == [JobStatus.NEW]
        with pytest.raises(JobNotFound):
            await client.get("missing")
        bad = spec()
        bad["owner"] = ""
        with pytest.raises(ApiError) as info:
            await client.submit(bad)
        assert "owner" in info.value.problems
