"""The web dashboard: its page and assets, and the two read routes only it needs
(`/v1/trends`, `/v1/inference/router`, `/v1/inference/endpoint`).

The page and its assets carry no data, so like /docs they need no token; every figure they
show comes from the API's routes with the caller's bearer token (docs/dashboard.md says how
the browser keeps it). Everything the page loads ships in this package: no CDN, no network.
A strict Content-Security-Policy allows scripts, styles and requests from this origin only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from stoker.api.auth import Caller, team_scope
from stoker.api.endpoint_panel import EndpointMetricsSource, EndpointPanel
from stoker.api.router_panel import RouterMetricsSource, RouterPanel
from stoker.core.errors import StokerError
from stoker.core.job import TERMINAL_STATUSES
from stoker.core.store_rules import MAX_TREND_DAYS
from stoker.lifecycle.jobs import JobService
from stoker.notifier.sent import JobNotifications, SentNotification

UI = Path(__file__).with_name("dashboard_ui")
DEFAULT_TREND_DAYS = 30
QUANTILES = (0.5, 0.9, 0.99)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class Me(BaseModel):
    subject: str
    team: str
    role: str


class DashboardConfig(BaseModel):
    trace_url: str | None = Field(
        description="where a trace id links, `{trace_id}` standing for it; null: no link"
    )
    router_panel: bool = Field(description="whether a router metrics URL is configured")
    endpoint_panel: bool = Field(description="whether an endpoint metrics URL is configured")


class JobNotificationList(BaseModel):
    available: bool = Field(description="false when this API process has no ledger to read")
    items: list[SentNotification]


class InvalidRange(StokerError):
    """A query's range that cannot be answered (422, naming the field)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class DayCounts(BaseModel):
    day: date
    counts: dict[str, int] = Field(description="jobs that reached each final state that day")


class ReasonCount(BaseModel):
    reason: str
    count: int


class CompletionTimes(BaseModel):
    jobs: int = Field(description="jobs completed in the range")
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None


class BillableHours(BaseModel):
    instance_type: str
    team: str
    hours: float


class TrendReport(BaseModel):
    since: date
    until: date
    team: str | None = Field(description="whose jobs; null: every team's (an admin)")
    jobs_per_day: list[DayCounts]
    retries_by_reason: list[ReasonCount]
    time_to_completion: CompletionTimes = Field(
        description="percentiles are the upper bound of a bucket: at most 10% above the truth"
    )
    billable_hours: list[BillableHours]


_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class _Secured:
    """The dashboard's answers with the security headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(
                    (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def add_dashboard(
    app: FastAPI,
    service: JobService,
    responses: dict[int | str, dict[str, Any]],
    *,
    router_metrics: RouterMetricsSource | None = None,
    endpoint_metrics: EndpointMetricsSource | None = None,
    notifications: JobNotifications | None = None,
    trace_url: str | None = None,
) -> None:
    """Serve the dashboard at /dashboard/ and its read routes on `app`."""
    app.mount("/dashboard/assets", _Secured(StaticFiles(directory=UI / "assets")), "assets")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_redirect() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=308)

    @app.get("/dashboard/", include_in_schema=False)
    async def dashboard_page() -> Response:
        return FileResponse(UI / "index.html", headers=SECURITY_HEADERS)

    @app.get("/v1/dashboard", response_model=DashboardConfig, responses=responses)
    async def dashboard_config(_principal: Caller) -> DashboardConfig:
        """What the dashboard's pages offer on this deployment."""
        return DashboardConfig(
            trace_url=trace_url,
            router_panel=router_metrics is not None,
            endpoint_panel=endpoint_metrics is not None,
        )

    @app.get("/v1/me", response_model=Me, responses=responses)
    async def me(principal: Caller) -> Me:
        """Who the token is: the owner of the jobs it submits, its team and role."""
        return Me(subject=principal.subject, team=principal.team, role=principal.role.value)

    @app.get(
        "/v1/jobs/{job_id}/notifications",
        response_model=JobNotificationList,
        responses={404: {"description": "unknown job, or another team's"}, **responses},
    )
    async def job_notifications(job_id: str, principal: Caller) -> JobNotificationList:
        """The notifications owed and sent about an ended job, as the notifier's ledger has
        them (targets redacted)."""
        job = await service.stored(job_id, team=team_scope(principal))
        if notifications is None:
            return JobNotificationList(available=False, items=[])
        return JobNotificationList(available=True, items=await notifications.of(job))

    @app.get("/v1/trends", response_model=TrendReport, responses=responses)
    async def trends(
        principal: Caller,
        since: Annotated[
            date | None, Query(description="first UTC day (default: 30 days ago)")
        ] = None,
        until: Annotated[date | None, Query(description="last UTC day (default: today)")] = None,
        team: Annotated[str | None, Query(description="an admin's filter")] = None,
    ) -> TrendReport:
        """Jobs per day by final state, retries by reason, time to completion, billable hours
        by instance type and team: your team's (an admin: every team's, or `team`'s)."""
        last = until or datetime.now(UTC).date()
        first = since or last - timedelta(days=DEFAULT_TREND_DAYS - 1)
        if last < first:
            raise InvalidRange("until", f"{last.isoformat()} is before since {first.isoformat()}")
        if (last - first).days > MAX_TREND_DAYS:
            raise InvalidRange("since", f"a range covers at most {MAX_TREND_DAYS} days")
        scope = team_scope(principal) or team
        found = await service.trends(
            datetime.combine(first, time(), UTC), datetime.combine(last, time(), UTC), team=scope
        )
        finals = sorted(TERMINAL_STATUSES)
        percentiles = found.completion_percentiles(*QUANTILES)
        return TrendReport(
            since=first,
            until=last,
            team=scope,
            jobs_per_day=[
                DayCounts(day=day, counts={s.value: counts.get(s, 0) for s in finals})
                for day, counts in found.jobs_per_status_per_day.items()
                if any(counts.get(s, 0) for s in finals)
            ],
            retries_by_reason=[
                ReasonCount(reason=reason, count=count)
                for reason, count in sorted(
                    found.retries_per_reason.items(), key=lambda item: (-item[1], item[0])
                )
            ],
            time_to_completion=CompletionTimes(
                jobs=sum(found.completions_per_bucket.values()),
                p50_s=percentiles[0.5],
                p90_s=percentiles[0.9],
                p99_s=percentiles[0.99],
            ),
            billable_hours=[
                BillableHours(instance_type=kind, team=owner, hours=round(seconds / 3600, 3))
                for (kind, owner), seconds in sorted(found.billable_seconds.items())
            ],
        )

    @app.get("/v1/inference/router", response_model=RouterPanel, responses=responses)
    async def router_panel(_principal: Caller) -> RouterPanel:
        """The inference router's figures, from its Prometheus endpoint
        (`STOKER_DASHBOARD_ROUTER_METRICS_URL`); `configured` is false without one."""
        if router_metrics is None:
            return RouterPanel(configured=False)
        return await router_metrics.panel()

    @app.get("/v1/inference/endpoint", response_model=EndpointPanel, responses=responses)
    async def endpoint_panel(_principal: Caller) -> EndpointPanel:
        """The multi-model endpoint's figures, from its Prometheus endpoint
        (`STOKER_DASHBOARD_ENDPOINT_METRICS_URL`); `configured` is false without one."""
        if endpoint_metrics is None:
            return EndpointPanel(configured=False)
        return await endpoint_metrics.panel()
