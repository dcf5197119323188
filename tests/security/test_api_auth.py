"""Who may do what through the jobs API: tokens (401), roles (403) and teams (404)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.routing import APIRoute

from stoker.core.auth import Role
from stoker.core.job import JobStatus
from tests.security.conftest import Tenants, spec

PUBLIC = {"/healthz"}
"""The only route that answers without a token (besides the OpenAPI document and its UI,
which describe the API and hold no data)."""
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
DASHBOARD = {"/dashboard", "/dashboard/"}
"""The web dashboard's page: like the docs, it holds no data; its figures come from the
/v1 routes with the caller's token (docs/security.md, "The web dashboard in a browser")."""


def api_routes(tenants: Tenants) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, path parameters filled in."""
    routes = []
    for route in tenants.app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC | DOCS | DASHBOARD:
            continue
        path = route.path.replace("{job_id}", "job-1")
        routes += [(method, path) for method in sorted(route.methods)]
    return routes


def test_the_app_has_the_routes_this_tier_checks(tenants: Tenants) -> None:
    """Every job route and the event stream are in the list the tests below walk."""
    paths = {path for _, path in api_routes(tenants)}
    assert {
        "/v1/jobs",
        "/v1/jobs/job-1",
        "/v1/jobs/job-1/history",
        "/v1/jobs/job-1/stop",
        "/v1/events",
        "/v1/jobs/job-1/notifications",
        "/v1/trends",
        "/v1/me",
        "/v1/inference/router",
        "/v1/inference/endpoint",
        "/v1/dashboard",
    } <= paths


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YW5hOnNlY3JldA==",
        "Bearer not-a-stoker-token",
        "Bearer stk_0123456789ab_wrongsecret",
    ],
    ids=["none", "empty", "no-token", "blank-token", "basic", "malformed", "unknown"],
)
async def test_every_route_without_a_valid_token_is_401(
    tenants: Tenants, authorization: str | None
) -> None:
    """No token, another scheme, a malformed or an unknown token: 401 on every route, with
    a Bearer challenge and a body naming the problem, never echoing what was sent; the
    job store is not touched."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with tenants.client() as http:
        for method, path in api_routes(tenants):
            body = spec("job-1") if method == "POST" and path == "/v1/jobs" else None
            response = await http.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
            assert response.json()["error"], (method, path)
            if method == "POST":  # a bad body changes nothing: the token is checked first
                response = await http.request(method, path, headers=headers, json={"x": 1})
                assert response.status_code == 401, (method, path, response.text)
            sent = (authorization or "").partition(" ")[2].strip()
            assert not sent or sent not in response.text, (method, path)
    assert (await tenants.store.list_jobs()).items == []


async def test_a_revoked_or_expired_token_is_401(tenants: Tenants) -> None:
    """A revoked token stops working at once; an expired one too, naming why."""
    async with tenants.client(tenants.gone) as http:
        response = await http.get("/v1/jobs")
        assert response.status_code == 401
        assert response.json() == {"error": "the token was revoked", "problems": []}
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    brief = await tenants.tokens.create(
        "ana", "search", Role.SUBMITTER, expires_in=timedelta(minutes=5)
    )
    async with tenants.client(brief.token) as http:
        assert (await http.get("/v1/jobs")).status_code == 200
        tenants.clock.advance(301)
        response = await http.get("/v1/jobs")
        assert (response.status_code, response.json()) == (
            401,
            {"error": "the token was expired", "problems": []},
        )


async def test_healthz_and_the_openapi_document_need_no_token(tenants: Tenants) -> None:
    """The health check answers anyone; the OpenAPI document declares the bearer scheme
    and puts every job route under it."""
    async with tenants.client() as http:
        assert (await http.get("/healthz")).status_code == 200
        document = (await http.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = [] if path in PUBLIC else [{"bearer": []}]
            assert operation.get("security", []) == expected, (method, path)


async def test_a_foreign_job_reads_exactly_like_an_unknown_one(tenants: Tenants) -> None:
    """bo (team ads) asking for ana's job (team search) by id, its history, its
    notifications, or stopping it, gets the very answer of an id that does not exist; the
    job is untouched."""
    async with tenants.client(tenants.ana) as ana:
        assert (await ana.post("/v1/jobs", json=spec("job-1"))).status_code == 201
    async with tenants.client(tenants.bo) as bo:
        for method, suffix in [
            ("GET", ""),
            ("GET", "/history"),
            ("GET", "/notifications"),
            ("POST", "/stop"),
        ]:
            foreign = await bo.request(method, f"/v1/jobs/job-1{suffix}")
            unknown = await bo.request(method, f"/v1/jobs/job-2{suffix}")
            assert foreign.status_code == unknown.status_code == 404, suffix
            assert foreign.json() == {"error": "job 'job-1' does not exist", "problems": []}
            assert unknown.json() == {"error": "job 'job-2' does not exist", "problems": []}
            assert foreign.headers.keys() == unknown.headers.keys()
        listed = await bo.get("/v1/jobs")
        assert listed.json() == {"items": [], "next_cursor": None}
        asked = await bo.get("/v1/jobs", params={"team": "search"})
        assert asked.json() == {"items": [], "next_cursor": None}
    assert (await tenants.store.get("job-1")).status is JobStatus.NEW


async def test_a_foreign_job_id_cannot_be_taken_over_by_resubmitting_it(tenants: Tenants) -> None:
    """bo submitting ana's job id gets a 409 that tells nothing about ana's job, and her
    job stays hers."""
    async with tenants.client(tenants.ana) as ana:
        await ana.post("/v1/jobs", json=spec("job-1", priority=5))
    async with tenants.client(tenants.bo) as bo:
        response = await bo.post("/v1/jobs", json=spec("job-1"))
    assert response.status_code == 409
    assert response.json()["error"] == "job id 'job-1' is taken; choose another"
    stored = await tenants.store.get("job-1")
    assert (stored.owner, stored.team, stored.priority) == ("ana", "search", 5)


async def test_a_viewer_reads_its_team_but_writes_nothing(tenants: Tenants) -> None:
    """vic (viewer, search) reads search's jobs; submitting and stopping are 403 whether
    the job is its team's, another team's or unknown, and change nothing."""
    async with tenants.client(tenants.ana) as ana:
        await ana.post("/v1/jobs", json=spec("job-1"))
    async with tenants.client(tenants.bo) as bo:
        await bo.post("/v1/jobs", json=spec("job-2"))
    async with tenants.client(tenants.vic) as vic:
        assert (await vic.get("/v1/jobs/job-1")).status_code == 200
        assert (await vic.get("/v1/jobs/job-1/history")).status_code == 200
        assert [j["job_id"] for j in (await vic.get("/v1/jobs")).json()["items"]] == ["job-1"]
        assert (await vic.get("/v1/jobs/job-2")).status_code == 404
        submitted = await vic.post("/v1/jobs", json=spec("job-3"))
        assert submitted.status_code == 403
        assert submitted.json()["error"] == "a viewer token may read, not submit or stop jobs"
        for job_id in ("job-1", "job-2", "job-9"):
            assert (await vic.post(f"/v1/jobs/{job_id}/stop")).status_code == 403
    assert {j.job_id: j.status for j in (await tenants.store.list_jobs()).items} == {
        "job-1": JobStatus.NEW,
        "job-2": JobStatus.NEW,
    }


async def test_a_submitter_owns_what_it_submits_and_stops_only_its_teams_jobs(
    tenants: Tenants,
) -> None:
    """The job's owner and team are the token's; a body naming another owner is a 422
    naming `owner`; a submitter stops its team's jobs (a teammate's too)."""
    async with tenants.client(tenants.ana) as ana:
        created = await ana.post("/v1/jobs", json=spec("job-1"))
        assert (created.json()["job"]["owner"], created.json()["job"]["team"]) == (
            "ana",
            "search",
        )
        same = await ana.post("/v1/jobs", json=spec("job-2", owner="ana"))
        assert same.status_code == 201
        other = await ana.post("/v1/jobs", json=spec("job-3", owner="bo"))
        assert other.status_code == 422
        assert [p["field"] for p in other.json()["problems"]] == ["owner"]

    mate = (await tenants.tokens.create("cy", "search", Role.SUBMITTER)).token
    async with tenants.client(mate) as cy:
        stopped = await cy.post("/v1/jobs/job-1/stop")
        assert stopped.status_code == 200
        assert stopped.json()["status"] == "Stopped"
    assert not any(j.job_id == "job-3" for j in (await tenants.store.list_jobs()).items)


async def test_an_admin_sees_and_stops_every_teams_jobs(tenants: Tenants) -> None:
    """root (admin, team ops) lists every team's jobs, filters by team, reads and stops
    another team's job."""
    async with tenants.client(tenants.ana) as ana:
        await ana.post("/v1/jobs", json=spec("job-1"))
    async with tenants.client(tenants.bo) as bo:
        await bo.post("/v1/jobs", json=spec("job-2"))
    async with tenants.client(tenants.root) as root:
        listed = (await root.get("/v1/jobs")).json()["items"]
        assert {j["job_id"]: j["team"] for j in listed} == {"job-1": "search", "job-2": "ads"}
        ads = (await root.get("/v1/jobs", params={"team": "ads"})).json()["items"]
        assert [j["job_id"] for j in ads] == ["job-2"]
        assert (await root.get("/v1/jobs/job-1")).json()["owner"] == "ana"
        assert (await root.get("/v1/jobs/job-2/history")).status_code == 200
        stopped = await root.post("/v1/jobs/job-2/stop")
        assert stopped.json()["status"] == "Stopped"
    history = await tenants.store.history("job-2")
    assert history[-1].reason == "stopped by root"
