"""FastAPI application for jobs. OpenAPI is served at /openapi.json.

Errors: 422 names each bad field; 404 for an unknown job id; 409 when stopping a job that
already ended, with its state. Nothing is half-created: the store write is the only write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stoker.core.errors import InfrastructureUnavailable, ItemTooLarge, JobNotFound
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.spec import JobSpec
from stoker.core.spec_limits import MAX_SPEC_BYTES
from stoker.core.store_rules import InvalidCursor
from stoker.lifecycle.jobs import InvalidJobSpec, JobAlreadyFinished, JobIdConflict, JobService
from stoker.web.body_limit import BodyLimit


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. training.ResourceConfig")
    problem: str


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


def create_app(service: JobService) -> FastAPI:
    app = FastAPI(
        title="stoker",
        version="1",
        description="Fire-and-forget training jobs: submit, follow, stop.",
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_SPEC_BYTES)

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

    @app.exception_handler(JobNotFound)
    async def _not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return _error(404, str(exc))

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

    @app.exception_handler(InvalidCursor)
    async def _bad_cursor(_request: Request, exc: InvalidCursor) -> JSONResponse:
        problem = FieldProblem(field="cursor", problem=f"{exc}; use a next_cursor of a page")
        return _error(400, "malformed cursor", problems=[problem])

    @app.exception_handler(ItemTooLarge)
    async def _too_large(_request: Request, exc: ItemTooLarge) -> JSONResponse:
        return _error(
            413, "job too large", problems=[FieldProblem(field=exc.field, problem=str(exc))]
        )

    @app.exception_handler(InfrastructureUnavailable)
    async def _unavailable(_request: Request, exc: InfrastructureUnavailable) -> JSONResponse:
        return _error(503, f"temporarily unavailable: {exc}")

    @app.post(
        "/v1/jobs",
        response_model=SubmitResponse,
        status_code=201,
        responses={
            200: {"model": SubmitResponse},
            409: {"model": ErrorBody, "description": "the job id exists with another spec"},
            413: {"model": ErrorBody, "description": "body or job too large"},
            422: {"model": ErrorBody},
        },
    )
    async def submit(spec: JobSpec) -> Any:
        """Submit a job. The same job id twice is one job (200 with created=false)."""
        job, created = await service.submit(spec)
        body = SubmitResponse(created=created, job=job)
        return JSONResponse(jsonable_encoder(body), status_code=201 if created else 200)

    @app.get("/v1/jobs/{job_id}", response_model=JobRecord, responses={404: {"model": ErrorBody}})
    async def get_job(job_id: str) -> JobRecord:
        return await service.get(job_id)

    @app.get(
        "/v1/jobs",
        response_model=JobPage,
        responses={
            400: {"model": ErrorBody, "description": "malformed cursor"},
            422: {"model": ErrorBody},
        },
    )
    async def list_jobs(
        status: JobStatus | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JobPage:
        page = await service.list_jobs(status=status, owner=owner, limit=limit, cursor=cursor)
        return JobPage(items=page.items, next_cursor=page.next_cursor)

    @app.get(
        "/v1/jobs/{job_id}/history",
        response_model=list[Transition],
        responses={404: {"model": ErrorBody}},
    )
    async def history(job_id: str) -> list[Transition]:
        return await service.history(job_id)

    @app.post(
        "/v1/jobs/{job_id}/stop",
        response_model=JobRecord,
        responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    )
    async def stop(job_id: str) -> JobRecord:
        """Stop a job: at once if it has not started, else through Stopping."""
        return await service.stop(job_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "time": datetime.now().astimezone().isoformat()}

    return app


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
    body = ErrorBody(error=message, problems=problems or [], status=status)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=code)
