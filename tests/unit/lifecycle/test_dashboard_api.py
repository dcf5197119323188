"""The API routes behind the dashboard: listing filters with bounded scans, trends scoped to
the caller's team, who the token is, a job's notifications from the ledger, the router
panel from a router's real metrics, and the page itself (its headers, no outside assets)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.adapters.store.memory import MemoryJobStore
from stoker.api import dashboard
from stoker.api.app import create_app
from stoker.api.endpoint_panel import EndpointMetricsSource
from stoker.api.router_panel import RouterMetricsSource
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.auth import Role
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.notification import ConsoleTarget, JobNote
from stoker.inference.fleet.metrics import FleetMetrics
from stoker.inference.router.metrics import RouterMetrics
from stoker.inference.router.policy import Priority
from stoker.lifecycle import job_filters
from stoker.notifier.config import NotifySettings
from stoker.notifier.sent import JobNotifications
from stoker.ports.ledger import EntryStatus, LedgerEntry
from stoker.ports.store import Page
from tests.support.auth import bearer, mint
from tests.unit.lifecycle.conftest import World, spec


def _client(app: object, token: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://t", headers=bearer(token))


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def app(world: World, ledger: MemoryLedger) -> object:
    notifications = JobNotifications(ledger, NotifySettings(fallback="console"), "unused")
    return create_app(
        world.jobs, TokenAuthenticator(world.store, world.clock), notifications=notifications
    )


async def _submit(http: httpx.AsyncClient, job_id: str, instance_type: str) -> None:
    body = spec(job_id)
    body["training"]["ResourceConfig"]["InstanceType"] = instance_type
    del body["owner"]
    assert (await http.post("/v1/jobs", json=body)).status_code == 201


async def _end(world: World, job_id: str, at_s: float, billable_s: int) -> None:
    job = await world.store.get(job_id)
    launched = world.clock.now() + timedelta(seconds=1)
    job = await world.store.transition(
        job_id, JobChange(to_status=JobStatus.LAUNCHED, at=launched), expected_version=job.version
    )
    change = JobChange(
        to_status=JobStatus.COMPLETED,
        at=launched + timedelta(seconds=at_s),
        details={"billable_seconds": billable_s},
    )
    await world.store.transition(job_id, change, expected_version=job.version)


async def test_instance_type_and_time_range_filter_with_a_bounded_scan(
    world: World, app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance type is matched over at most SCAN_JOBS jobs a request: a short page
    still carries a cursor to read on, and following the cursors finds every match. A time
    range selects by creation time; a range that ends before it starts is a 422."""
    monkeypatch.setattr(job_filters, "SCAN_JOBS", 500)
    token = await mint(world.store, "ana", "search", clock=world.clock)
    async with _client(app, token) as http:
        for n in range(1200):
            await _submit(http, f"j{n:04d}", "ml.g5.xlarge" if n % 400 == 0 else "ml.m5.large")
            world.clock.advance(1)
        found: list[str] = []
        cursor = None
        requests = 0
        while True:
            page = (
                await http.get(
                    "/v1/jobs",
                    params={"instance_type": "ml.g5.xlarge", "limit": 10}
                    | ({"cursor": cursor} if cursor else {}),
                )
            ).json()
            requests += 1
            found += [job["job_id"] for job in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert found == ["j0800", "j0400", "j0000"]
        assert requests == 3  # 500 jobs read per request, 1,200 in all

        first = await world.store.get("j0100")
        last = await world.store.get("j0104")
        ranged = await http.get(
            "/v1/jobs",
            params={
                "created_since": first.created_at.isoformat(),
                "created_until": last.created_at.isoformat(),
            },
        )
        assert [job["job_id"] for job in ranged.json()["items"]] == [
            f"j{n:04d}" for n in range(104, 99, -1)
        ]
        assert ranged.json()["next_cursor"] is None
        wrong = await http.get(
            "/v1/jobs",
            params={
                "created_since": last.created_at.isoformat(),
                "created_until": first.created_at.isoformat(),
            },
        )
        assert wrong.status_code == 422
        assert wrong.json()["problems"][0]["field"] == "created_until"


async def test_trends_are_the_callers_teams_and_an_admins_are_everyones(
    world: World, app: object
) -> None:
    """Team search sees its completed job, its billable hours and its time to completion,
    never team ads's; an admin sees both teams; a reversed range is a 422 naming `until`."""
    ana = await mint(world.store, "ana", "search", clock=world.clock)
    bo = await mint(world.store, "bo", "ads", clock=world.clock)
    admin = await mint(world.store, "root", "ops", Role.ADMIN, clock=world.clock)
    async with _client(app, ana) as mine, _client(app, bo) as theirs:
        await _submit(mine, "ours", "ml.m5.large")
        await _submit(theirs, "theirs", "ml.p3.2xlarge")
    await _end(world, "ours", 600, 3600)
    await _end(world, "theirs", 60, 7200)
    day = world.clock.now().date().isoformat()
    async with _client(app, ana) as mine:
        report = (await mine.get("/v1/trends", params={"since": day, "until": day})).json()
        reversed_range = await mine.get("/v1/trends", params={"since": day, "until": "2000-01-01"})
    assert report["team"] == "search"
    assert report["jobs_per_day"] == [
        {"day": day, "counts": {"Completed": 1, "Failed": 0, "Stopped": 0}}
    ]
    assert report["billable_hours"] == [
        {"instance_type": "ml.m5.large", "team": "search", "hours": 1.0}
    ]
    assert report["time_to_completion"]["jobs"] == 1
    assert 600 <= report["time_to_completion"]["p50_s"] < 660
    assert reversed_range.status_code == 422
    assert reversed_range.json()["problems"][0]["field"] == "until"
    async with _client(app, admin) as everyone:
        report = (await everyone.get("/v1/trends", params={"since": day, "until": day})).json()
    assert report["team"] is None
    assert {(b["team"], b["hours"]) for b in report["billable_hours"]} == {
        ("search", 1.0),
        ("ads", 2.0),
    }


async def test_me_and_a_jobs_notifications_from_the_ledger(
    world: World, app: object, ledger: MemoryLedger
) -> None:
    """/v1/me names the token's owner, team and role. An ended job's notifications are its
    ledger entries (the console fallback here), with their status; another team's job is a
    404 like an unknown one."""
    ana = await mint(world.store, "ana", "search", clock=world.clock)
    bo = await mint(world.store, "bo", "ads", clock=world.clock)
    async with _client(app, ana) as http:
        assert (await http.get("/v1/me")).json() == {
            "subject": "ana",
            "team": "search",
            "role": "submitter",
        }
        await _submit(http, "done", "ml.m5.large")
        assert (await http.get("/v1/jobs/done/notifications")).json() == {
            "available": True,
            "items": [],
        }
        await _end(world, "done", 10, 10)
        note = JobNote(
            job_id="done",
            owner="ana",
            state=JobStatus.COMPLETED,
            attempts=1,
            reason=None,
            ended_at=world.clock.now(),
        )
        entry = LedgerEntry.new(
            note=note, event_id="e1", target=ConsoleTarget(), at=world.clock.now()
        )
        await ledger.add(entry)
        await ledger.mark_sent([entry.entry_id], world.clock.now())
        listed = (await http.get("/v1/jobs/done/notifications")).json()
    assert listed["items"] == [
        {
            "channel": "console",
            "target": "console",
            "status": EntryStatus.SENT.value,
            "updated_at": world.clock.now().isoformat().replace("+00:00", "Z"),
            "failure_reason": None,
        }
    ]
    async with _client(app, bo) as other:
        assert (await other.get("/v1/jobs/done/notifications")).status_code == 404


async def test_router_panel_reads_the_routers_own_metrics(world: World) -> None:
    """The panel parses what the router's RouterMetrics exposes: requests, latency
    quantiles from the histogram, batches per size bucket, queue depth, refusals."""
    metrics = RouterMetrics()
    for _ in range(98):
        metrics.served("intent", 32, 0.004)
    metrics.served("intent", 32, 0.2)
    metrics.served("intent", 32, 0.2)
    metrics.batch_ran("intent", 32, 8, 5, 0.003)
    metrics.batch_ran("intent", 32, 1, 1, 0.003)
    metrics.queued_for("intent", Priority.REALTIME, 0.001)
    metrics.queue_depth("intent", 3)
    metrics.rejected("intent", "queue-full")

    def scrape(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        return httpx.Response(200, content=metrics.render())

    source = RouterMetricsSource("http://router/metrics", transport=httpx.MockTransport(scrape))
    token = await mint(world.store, "ana", "search", clock=world.clock)
    app = create_app(
        world.jobs, TokenAuthenticator(world.store, world.clock), router_metrics=source
    )
    async with _client(app, token) as http:
        panel = (await http.get("/v1/inference/router")).json()
    assert panel["configured"] is True
    assert panel["requests_total"] == 100
    assert panel["rejections_total"] == 1
    assert 0.003 <= panel["latency_p50_s"] <= 0.005
    assert 0.1 <= panel["latency_p99_s"] <= 0.25
    assert {b["le"]: b["count"] for b in panel["batches"] if b["count"]} == {1.0: 1, 8.0: 1}
    assert panel["queue_depth"] == {"intent": 3.0}


async def test_the_router_panel_without_a_router_and_with_one_down(world: World) -> None:
    """No URL configured: `configured` false, no figures. A router that does not answer:
    503 naming it, never made-up figures."""
    token = await mint(world.store, "ana", "search", clock=world.clock)
    authenticator = TokenAuthenticator(world.store, world.clock)
    async with _client(create_app(world.jobs, authenticator), token) as http:
        assert (await http.get("/v1/inference/router")).json()["configured"] is False
        assert (await http.get("/v1/dashboard")).json() == {
            "trace_url": None,
            "router_panel": False,
            "endpoint_panel": False,
        }

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    source = RouterMetricsSource("http://router/metrics", transport=httpx.MockTransport(down))
    app = create_app(world.jobs, authenticator, router_metrics=source)
    async with _client(app, token) as http:
        answer = await http.get("/v1/inference/router")
    assert answer.status_code == 503
    assert "http://router/metrics" in answer.json()["error"]


def _fleet_metrics() -> FleetMetrics:
    """An endpoint's metrics after 10 invocations: 7 found in memory, 2 loaded from disk,
    1 from the object store; one failed load, evictions, what each tier holds."""
    metrics = FleetMetrics()
    for _ in range(7):
        metrics.requests.labels("runtime", "200").inc()
        metrics.lookups.labels("memory").inc()
        metrics.request_seconds.labels("memory").observe(0.003)
    for seconds in (0.03, 0.04):
        metrics.requests.labels("runtime", "200").inc()
        metrics.lookups.labels("disk").inc()
        metrics.cold_load_seconds.labels("disk").observe(seconds)
        metrics.request_seconds.labels("disk").observe(seconds)
    metrics.requests.labels("container", "200").inc()
    metrics.lookups.labels("store").inc()
    metrics.cold_load_seconds.labels("store").observe(0.7)
    metrics.request_seconds.labels("store").observe(0.7)
    metrics.load_failures.inc()
    metrics.evictions.labels("memory").inc(3)
    metrics.evictions.labels("disk").inc()
    metrics.tier_size("memory", 4, 4096)
    metrics.tier_size("disk", 9, 90_000)
    return metrics


async def test_endpoint_panel_reads_the_endpoints_own_metrics(world: World) -> None:
    """The panel parses what the endpoint's FleetMetrics exposes: requests, hit rate from
    the lookups by tier, cold loads and their quantiles by source, failures, evictions and
    what each tier holds."""
    metrics = _fleet_metrics()

    def scrape(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        return httpx.Response(200, content=metrics.render())

    transport = httpx.MockTransport(scrape)
    source = EndpointMetricsSource("http://endpoint/metrics", transport=transport)
    token = await mint(world.store, "ana", "search", clock=world.clock)
    authenticator = TokenAuthenticator(world.store, world.clock)
    app = create_app(world.jobs, authenticator, endpoint_metrics=source)
    async with _client(app, token) as http:
        panel = (await http.get("/v1/inference/endpoint")).json()
        assert (await http.get("/v1/dashboard")).json()["endpoint_panel"] is True
    assert panel["configured"] is True
    assert panel["requests_total"] == 10
    assert panel["lookups"] == {"disk": 2, "memory": 7, "store": 1}
    assert panel["hit_rate"] == pytest.approx(0.7)
    assert 0.002 <= panel["latency_p50_s"] <= 0.005
    assert 0.5 <= panel["latency_p99_s"] <= 1.0
    loads = {load["source"]: load for load in panel["cold_loads"]}
    assert loads.keys() == {"disk", "store"}
    assert loads["disk"]["count"] == 2
    assert 0.025 <= loads["disk"]["p50_s"] <= 0.05
    assert loads["store"]["count"] == 1
    assert 0.5 <= loads["store"]["p99_s"] <= 1.0
    assert panel["load_failures_total"] == 1
    assert panel["tiers"] == [
        {"tier": "disk", "models": 9, "bytes": 90_000, "evictions": 1},
        {"tier": "memory", "models": 4, "bytes": 4096, "evictions": 3},
    ]


async def test_the_endpoint_panel_needs_a_token_and_says_when_it_cannot_read(
    world: World,
) -> None:
    """Without a token: 401. No URL configured: `configured` false, no figures. An endpoint
    that does not answer: 503 naming it. Before any invocation: no hit rate, not 0."""
    token = await mint(world.store, "ana", "search", clock=world.clock)
    authenticator = TokenAuthenticator(world.store, world.clock)
    async with _client(create_app(world.jobs, authenticator), token) as http:
        assert (await http.get("/v1/inference/endpoint")).json() == {
            "configured": False,
            "read_at": None,
            "requests_total": 0,
            "latency_p50_s": None,
            "latency_p99_s": None,
            "lookups": {},
            "hit_rate": None,
            "cold_loads": [],
            "load_failures_total": 0,
            "tiers": [],
        }

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    source = EndpointMetricsSource("http://endpoint/metrics", transport=httpx.MockTransport(down))
    app = create_app(world.jobs, authenticator, endpoint_metrics=source)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://t",
    ) as anonymous:
        assert (await anonymous.get("/v1/inference/endpoint")).status_code == 401
    async with _client(app, token) as http:
        answer = await http.get("/v1/inference/endpoint")
    assert answer.status_code == 503
    assert "endpoint metrics at http://endpoint/metrics" in answer.json()["error"]

    fresh = FleetMetrics().render()
    idle = EndpointMetricsSource(
        "http://endpoint/metrics",
        transport=httpx.MockTransport(lambda _request: httpx.Response(200, content=fresh)),
    )
    app = create_app(world.jobs, authenticator, endpoint_metrics=idle)
    async with _client(app, token) as http:
        panel = (await http.get("/v1/inference/endpoint")).json()
    assert panel["configured"] is True
    assert panel["requests_total"] == 0
    assert panel["hit_rate"] is None
    assert panel["latency_p50_s"] is None


async def test_the_page_needs_no_token_and_loads_nothing_from_elsewhere(app: object) -> None:
    """The page and its assets carry no data: served without a token, with a
    Content-Security-Policy allowing this origin only; no asset names another host. The
    data routes still need the token."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://t",
    ) as anonymous:
        page = await anonymous.get("/dashboard/")
        script = await anonymous.get("/dashboard/assets/js/main.js")
        assert (await anonymous.get("/v1/trends")).status_code == 401
        assert (await anonymous.get("/v1/me")).status_code == 401
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200
    assert "default-src 'none'" in script.headers["content-security-policy"]
    assert script.headers["content-type"].startswith("text/javascript")


def test_no_asset_names_another_host() -> None:
    """Every script, style and page ships in the package: none names another host (the SVG
    namespace is a name, never fetched)."""
    outside = re.compile(r"(https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}", re.I)
    assets = [asset for asset in Path(dashboard.UI).rglob("*") if asset.is_file()]
    assert len(assets) >= 8
    for asset in assets:
        assert not outside.search(asset.read_text()), asset


async def test_filtered_pages_continue_where_the_last_kept_job_was() -> None:
    """A page filled in the middle of a store page continues after its last job: following
    the cursors gives every match once, newest first, then a null cursor."""
    store = MemoryJobStore()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for n in range(10):
        kind = "ml.g5.xlarge" if n % 2 else "ml.m5.large"
        await store.create(
            JobRecord(
                job_id=f"j{n}",
                owner="ana",
                created_at=start + timedelta(seconds=n),
                updated_at=start,
                details={"instance_type": kind},
            )
        )

    async def list_page(cursor: str | None, size: int) -> Page:
        return await store.list_jobs(limit=size, cursor=cursor)

    wanted = job_filters.JobFilter(instance_type="ml.g5.xlarge")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await job_filters.filtered_page(list_page, wanted, limit=2, cursor=cursor)
        seen += [job.job_id for job in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["j9", "j7", "j5", "j3", "j1"]
    assert cursor is None
