"""FastAPI application for jobs. OpenAPI is served at /openapi.json.

Every route but /healthz needs a bearer token (`stoker.api.auth`); the job's owner and team
are the caller's. A viewer reads its team's jobs, a submitter also submits and stops them,
an admin sees and acts on every team's.

Errors: 401 without a valid token; 403 for a viewer's write, and naming each rule of the
team's policy a job breaks, with the field it concerns; 422 names each bad field (of the
body, and of `training` against SageMaker's CreateTrainingJob shape); 404 for an unknown job
id and for another team's; 409 when stopping a job that already ended, with its state, or
when a job id is another team's; 429 past a credential's rate (with Retry-After) or a
team's quota of jobs in flight. Nothing is half-created: the store write is the only write.
/openapi.json and /docs describe the API and carry no data, so they need no token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stoker.api.auth import Caller, Writer, install_auth, team_scope
from stoker.api.dashboard import InvalidRange, add_dashboard
from stoker.api.endpoint_panel import EndpointMetricsSource
from stoker.api.events import EventFeed, UnknownEventTypes, add_event_route
from stoker.api.pipelines import add_pipeline_routes
from stoker.api.router_panel import RouterMetricsSource
from stoker.api.sagemaker import add_sagemaker_pipelines
from stoker.core.cursors import InvalidCursor
from stoker.core.errors import InfrastructureUnavailable, ItemTooLarge, JobNotFound
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.ratelimit import RateLimiter
from stoker.core.spec import JobSpec
from stoker.core.spec_limits import MAX_SPEC_BYTES
from stoker.lifecycle.job_filters import JobFilter
from stoker.lifecycle.jobs import (
    InvalidJobSpec,
    JobAlreadyFinished,
    JobIdConflict,
    JobIdTaken,
    JobService,
    PolicyViolation,
)
from stoker.notifier.sent import JobNotifications
from stoker.pipelines.operations import PipelineOperations
from stoker.ports.auth import Authenticator
from stoker.web.auth import install_refusals
from stoker.web.body_limit import BodyLimit


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. training.ResourceConfig")
    problem: str
    rule: str | None = Field(
        default=None, description="the policy rule broken (403 answers only), e.g. role_arns"
    )


class ErrorBody(BaseModel):
    error: str
    problems: list[FieldProblem] = Field(default_factory=list)
    status: JobStatus | None = None


class SubmitResponse(BaseModel):
    created: bool = Field(description="false when a job with this id existed already")
    job: JobRecord


class JobPage(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None


def create_app(
    service: JobService,
    authenticator: Authenticator,
    *,
    events: EventFeed | None = None,
    rate_limiter: RateLimiter | None = None,
    router_metrics: RouterMetricsSource | None = None,
    endpoint_metrics: EndpointMetricsSource | None = None,
    notifications: JobNotifications | None = None,
    trace_url: str | None = None,
    pipelines: PipelineOperations | None = None,
) -> FastAPI:
    """The jobs API and its web dashboard (/dashboard/). `authenticator` checks every bearer
    token and `rate_limiter` (if any) holds each credential to its rate; `events`, when
    given, serves GET /v1/events; `router_metrics` and `endpoint_metrics` feed the
    dashboard's inference panels and `notifications` (the notifier's ledger) a job's
    notifications; `trace_url` (with
    `{trace_id}`) is where the dashboard links a job's trace; `pipelines`, when given,
    serves the pipeline routes (`stoker.api.pipelines`) and SageMaker's pipeline operations
    at POST / (`stoker.api.sagemaker`)."""
    app = FastAPI(
        title="stoker",
        version="1",
        description="Fire-and-forget training jobs: submit, follow, stop. Every route but "
        "/healthz needs `Authorization: Bearer <token>`.",
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_SPEC_BYTES)
    # 401, 403, rate limits and quotas (429) answer in the API's error shape.
    install_refusals(app, body=lambda _reason, message: _error_body(message))
    install_auth(app, authenticator, rate_limiter)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            FieldProblem(field=_path(err.get("loc", ())), problem=str(err.get("msg", "")))
            for err in exc.errors()
        ]
        return _error(422, "invalid request", problems=problems)

    @app.exception_handler(InvalidJobSpec)
    async def _invalid_spec(_request: Request, exc: InvalidJobSpec) -> JSONResponse:
        problems = [FieldProblem(field=k, problem=v) for k, v in exc.problems.items()]
        return _error(422, "invalid job spec", problems=problems)

    @app.exception_handler(PolicyViolation)
    async def _refused(_request: Request, exc: PolicyViolation) -> JSONResponse:
        problems = [
            FieldProblem(field=v.field, problem=v.problem, rule=v.rule) for v in exc.violations
        ]
        return _error(403, f"refused by the policy of team {exc.team!r}", problems=problems)

    @app.exception_handler(JobNotFound)
    async def _not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(JobIdTaken)
    async def _taken(_request: Request, exc: JobIdTaken) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(UnknownEventTypes)
    async def _unknown_types(_request: Request, exc: UnknownEventTypes) -> JSONResponse:
        return _error(422, str(exc), problems=[FieldProblem(field="type", problem=str(exc))])

    @app.exception_handler(JobAlreadyFinished)
    async def _finished(_request: Request, exc: JobAlreadyFinished) -> JSONResponse:
        return _error(409, str(exc), status=exc.job.status)

    @app.exception_handler(JobIdConflict)
    async def _conflict(_request: Request, exc: JobIdConflict) -> JSONResponse:
        problems = [
            FieldProblem(field=f, problem="differs from the job already stored under this id")
            for f in exc.differences
        ]
        return _error(409, f"job {exc.job_id!r} exists with a different spec", problems=problems)

    @app.exception_handler(InvalidRange)
    async def _bad_range(_request: Request, exc: InvalidRange) -> JSONResponse:
        problem = FieldProblem(field=exc.field, problem=exc.problem)
        return _error(422, "invalid range", problems=[problem])

    @app.exception_handler(InvalidCursor)
    async def _bad_cursor(_request: Request, exc: InvalidCursor) -> JSONResponse:
        problem = FieldProblem(field="cursor", problem=f"{exc}; use a next_cursor of a page")
        return _error(400, "malformed cursor", problems=[problem])

    @app.exception_handler(ItemTooLarge)
    async def _too_large(_request: Request, exc: ItemTooLarge) -> JSONResponse:
        # A job's, or a pipeline's (its definition, an execution's state).
        title = "job too large" if exc.what == "the job" else "too large for the store"
        return _error(413, title, problems=[FieldProblem(field=exc.field, problem=str(exc))])

    @app.exception_handler(InfrastructureUnavailable)
    async def _unavailable(_request: Request, exc: InfrastructureUnavailable) -> JSONResponse:
        return _error(503, f"temporarily unavailable: {exc}")

    @app.post(
        "/v1/jobs",
        response_model=SubmitResponse,
        status_code=201,
        responses={
            200: {"model": SubmitResponse},
            403: {"model": ErrorBody},
            409: {"model": ErrorBody, "description": "the job id exists with another spec"},
            413: {"model": ErrorBody, "description": "body or job too large"},
            422: {"model": ErrorBody},
            429: {"model": ErrorBody},
            **AUTH_RESPONSES,
        },
    )
    async def submit(spec: JobSpec, principal: Writer) -> Any:
        """Submit a job, owned by the caller, in the caller's team. The same job id twice
        is one job (200 with created=false); another team's job id is a 409. A request the
        team's policy does not allow is refused with 403, naming each rule it breaks."""
        job, created = await service.submit(spec, owner=principal.subject, team=principal.team)
        body = SubmitResponse(created=created, job=job)
        return JSONResponse(jsonable_encoder(body), status_code=201 if created else 200)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobRecord,
        responses={404: {"model": ErrorBody}, **AUTH_RESPONSES},
    )
    async def get_job(job_id: str, principal: Caller) -> JobRecord:
        return await service.get(job_id, team=team_scope(principal))

    @app.get(
        "/v1/jobs",
        response_model=JobPage,
        responses={
            400: {"model": ErrorBody, "description": "malformed cursor"},
            422: {"model": ErrorBody},
            **AUTH_RESPONSES,
        },
    )
    async def list_jobs(
        principal: Caller,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: Annotated[
            str | None, Query(description="an admin's filter; others see their own team")
        ] = None,
        instance_type: Annotated[
            str | None, Query(description="the instance type the job runs (or asked for)")
        ] = None,
        created_since: Annotated[
            datetime | None, Query(description="jobs created at or after this time")
        ] = None,
        created_until: Annotated[
            datetime | None, Query(description="jobs created at or before this time")
        ] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JobPage:
        """Jobs of your team (an admin: every team's, or `team`'s), newest first. With
        `instance_type`, a page may hold fewer than `limit` jobs (even none) and still have a
        `next_cursor`: each request reads a bounded number of jobs."""
        scope = team_scope(principal)
        if scope is not None and team not in (None, scope):
            # Another team's listing is empty, like a team that has no jobs.
            return JobPage(items=[], next_cursor=None)
        try:
            wanted = JobFilter(
                instance_type=instance_type,
                created_since=created_since,
                created_until=created_until,
            )
        except ValueError as exc:
            raise InvalidRange("created_until", str(exc)) from exc
        page = await service.list_jobs(
            status=status,
            owner=owner,
            team=scope or team,
            limit=limit,
            cursor=cursor,
            wanted=wanted,
        )
        return JobPage(items=page.items, next_cursor=page.next_cursor)

    @app.get(
        "/v1/jobs/{job_id}/history",
        response_model=list[Transition],
        responses={404: {"model": ErrorBody}, **AUTH_RESPONSES},
    )
    async def history(job_id: str, principal: Caller) -> list[Transition]:
        return await service.history(job_id, team=team_scope(principal))

    @app.post(
        "/v1/jobs/{job_id}/stop",
        response_model=JobRecord,
        responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, **AUTH_RESPONSES},
    )
    async def stop(job_id: str, principal: Writer) -> JobRecord:
        """Stop a job: at once if it has not started, else through Stopping."""
        return await service.stop(
            job_id, f"stopped by {principal.subject}", team=team_scope(principal)
        )

    if events is not None:
        add_event_route(app, events, AUTH_RESPONSES)
    if pipelines is not None:
        add_pipeline_routes(app, pipelines, AUTH_RESPONSES)
        add_sagemaker_pipelines(app, pipelines, authenticator)
    add_dashboard(
        app,
        service,
        AUTH_RESPONSES,
        router_metrics=router_metrics,
        endpoint_metrics=endpoint_metrics,
        notifications=notifications,
        trace_url=trace_url,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "time": datetime.now().astimezone().isoformat()}

    return app


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no valid bearer token"},
    403: {"model": ErrorBody, "description": "the token's role may not do this"},
}


def _path(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "<body>"


def _error(
    code: int,
    message: str,
    *,
    problems: list[FieldProblem] | None = None,
    status: JobStatus | None = None,
) -> JSONResponse:
    return JSONResponse(_error_body(message, problems, status), status_code=code)


def _error_body(
    message: str,
    problems: list[FieldProblem] | None = None,
    status: JobStatus | None = None,
) -> dict[str, Any]:
    body = ErrorBody(error=message, problems=problems or [], status=status)
    return body.model_dump(mode="json", exclude_none=True)
