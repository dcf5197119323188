"""Plain HTTP routes for pipelines, executions and schedules (`stoker pipelines`,
`stoker executions`, `stoker schedules` call them).

Same rules as the job routes: a bearer token on every route, a viewer reads, a submitter
also changes, an admin sees every team's; another team's pipeline, execution or schedule
answers 404 like an unknown one. A bad definition or parameter answers 422 with one problem
per step and field (`field` is `Steps.<step>.<field>`, or the top-level field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stoker.api.auth import Caller, Writer, team_scope
from stoker.core.pipelines import DefinitionError, ParameterError, Problem
from stoker.core.pipelines.records import (
    ExecutionNotFound,
    PipelineNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
)
from stoker.core.pipelines.state import ExecutionStatus, StepStatus
from stoker.pipelines.operations import PipelineOperations


class PipelineBody(BaseModel):
    definition: dict[str, Any] | str = Field(
        description="a SageMaker pipeline definition (Version 2020-12-01), as an object or "
        "as the JSON text the SDK's Pipeline.definition() returns"
    )
    description: str | None = None


class PipelineView(BaseModel):
    name: str
    arn: str
    team: str
    version: int
    description: str | None
    created_at: datetime
    updated_at: datetime
    definition: dict[str, Any]


class StartBody(BaseModel):
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="values of the pipeline's parameters by name"
    )


class StepView(BaseModel):
    name: str
    status: StepStatus
    attempt: int
    job_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    failure_reason: str | None
    cache_hit_of: str | None
    outcome: bool | None
    properties: dict[str, Any] | None = Field(
        default=None, description="what the step produced (e.g. ModelArtifacts), once it ended"
    )


class ExecutionView(BaseModel):
    execution_id: str
    arn: str
    pipeline_name: str
    team: str
    owner: str | None
    schedule: str | None
    status: ExecutionStatus
    started_at: datetime
    ended_at: datetime | None
    failure_reason: str | None
    parameters: dict[str, Any]
    steps: list[StepView]


class ExecutionPage(BaseModel):
    items: list[ExecutionView]
    next_cursor: str | None = Field(
        description="where the next page starts (the `cursor` of the next request); null on "
        "the last page"
    )


class ScheduleBody(BaseModel):
    pipeline: str
    expression: str = Field(description="cron(...) with six fields, rate(n unit) or at(...)")
    start_date: datetime | None = None
    allow_overlap: bool = False
    catch_up: bool = False


class ScheduleView(BaseModel):
    name: str
    pipeline: str
    team: str
    expression: str
    enabled: bool
    start_date: datetime | None
    allow_overlap: bool
    catch_up: bool
    last_tick: datetime | None
    last_execution_id: str | None


def add_pipeline_routes(
    app: FastAPI, ops: PipelineOperations, auth_responses: dict[int | str, dict[str, Any]]
) -> None:
    errors: dict[int | str, dict[str, Any]] = {
        404: {"description": "unknown, or another team's"},
        422: {"description": "a bad definition, parameter or field"},
        **auth_responses,
    }

    @app.exception_handler(DefinitionError)
    async def _bad_definition(_request: Request, exc: DefinitionError) -> JSONResponse:
        return _refused(422, "invalid pipeline definition", exc.problems)

    @app.exception_handler(ParameterError)
    async def _bad_parameters(_request: Request, exc: ParameterError) -> JSONResponse:
        return _refused(422, "invalid pipeline parameters", exc.problems)

    async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc), "problems": []}, status_code=404)

    for missing in (PipelineNotFound, ExecutionNotFound, ScheduleNotFound):
        app.add_exception_handler(missing, _not_found)

    @app.exception_handler(ScheduleConflict)
    async def _conflict(_request: Request, exc: ScheduleConflict) -> JSONResponse:
        return JSONResponse({"error": str(exc), "problems": []}, status_code=409)

    @app.put("/v1/pipelines/{name}", response_model=PipelineView, responses=errors)
    async def put_pipeline(name: str, body: PipelineBody, principal: Writer) -> JSONResponse:
        """Create the pipeline (201) or replace its definition (200, version + 1)."""
        text = body.definition
        if not isinstance(text, str):
            text = orjson.dumps(text).decode()
        upserted = await ops.put_pipeline(
            name, text, team=principal.team, description=body.description
        )
        view = _pipeline(ops, upserted.pipeline)
        return JSONResponse(
            view.model_dump(mode="json"), status_code=201 if upserted.created else 200
        )

    @app.get("/v1/pipelines", response_model=list[PipelineView], responses=auth_responses)
    async def list_pipelines(principal: Caller) -> list[PipelineView]:
        pipelines = await ops.list_pipelines(team=team_scope(principal))
        return [_pipeline(ops, p) for p in pipelines]

    @app.get("/v1/pipelines/{name}", response_model=PipelineView, responses=errors)
    async def get_pipeline(name: str, principal: Caller) -> PipelineView:
        return _pipeline(ops, await ops.get_pipeline(name, team=team_scope(principal)))

    @app.delete("/v1/pipelines/{name}", response_model=PipelineView, responses=errors)
    async def delete_pipeline(name: str, principal: Writer) -> PipelineView:
        """Delete the pipeline; its executions stay, for the record."""
        return _pipeline(ops, await ops.delete_pipeline(name, team=team_scope(principal)))

    @app.post(
        "/v1/pipelines/{name}/executions",
        response_model=ExecutionView,
        status_code=201,
        responses=errors,
    )
    async def start_execution(name: str, body: StartBody, principal: Writer) -> ExecutionView:
        """Start an execution; parameters that do not fit are refused (422) before anything
        runs."""
        stored = await ops.start_execution(
            name, body.parameters, team=team_scope(principal), owner=principal.subject
        )
        return _execution(stored)

    @app.get(
        "/v1/pipelines/{name}/executions",
        response_model=ExecutionPage,
        responses={400: {"description": "malformed cursor"}, **errors},
    )
    async def list_executions(
        name: str,
        principal: Caller,
        *,
        cursor: Annotated[
            str | None, Query(description="the next_cursor of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        """Newest first (or oldest first), a page at a time: follow `next_cursor` (with
        the same `oldest_first`) until it is null."""
        page = await ops.execution_page(
            name, team=team_scope(principal), limit=limit, cursor=cursor, oldest_first=oldest_first
        )
        return ExecutionPage(
            items=[_execution(e) for e in page.items], next_cursor=page.next_cursor
        )

    @app.get("/v1/executions/{execution_id}", response_model=ExecutionView, responses=errors)
    async def get_execution(execution_id: str, principal: Caller) -> ExecutionView:
        return _execution(await ops.get_execution(execution_id, team=team_scope(principal)))

    @app.post("/v1/executions/{execution_id}/stop", response_model=ExecutionView, responses=errors)
    async def stop_execution(execution_id: str, principal: Writer) -> ExecutionView:
        """Stop: running step jobs are asked to stop, nothing new starts. An execution that
        ended is returned as it is."""
        return _execution(await ops.stop_execution(execution_id, team=team_scope(principal)))

    @app.put("/v1/schedules/{name}", response_model=ScheduleView, status_code=201, responses=errors)
    async def put_schedule(name: str, body: ScheduleBody, principal: Writer) -> Any:
        """Make a schedule of a pipeline (409 when the name is taken)."""
        try:
            stored = await ops.put_schedule(
                name,
                body.pipeline,
                body.expression,
                team=team_scope(principal),
                start_date=body.start_date,
                allow_overlap=body.allow_overlap,
                catch_up=body.catch_up,
            )
        except ValueError as exc:
            problem = {"field": "expression", "problem": str(exc)}
            return JSONResponse(
                {"error": "invalid schedule", "problems": [problem]}, status_code=422
            )
        return _schedule(stored)

    @app.get("/v1/schedules", response_model=list[ScheduleView], responses=auth_responses)
    async def list_schedules(principal: Caller) -> list[ScheduleView]:
        return [_schedule(s) for s in await ops.list_schedules(team=team_scope(principal))]

    @app.post("/v1/schedules/{name}/pause", response_model=ScheduleView, responses=errors)
    async def pause_schedule(name: str, principal: Writer) -> ScheduleView:
        return _schedule(await ops.pause_schedule(name, team=team_scope(principal)))

    @app.post("/v1/schedules/{name}/resume", response_model=ScheduleView, responses=errors)
    async def resume_schedule(name: str, principal: Writer) -> ScheduleView:
        """Enable again; ticks that fell while paused are not run."""
        return _schedule(await ops.resume_schedule(name, team=team_scope(principal)))

    @app.delete("/v1/schedules/{name}", status_code=204, responses=errors)
    async def delete_schedule(name: str, principal: Writer) -> None:
        await ops.delete_schedule(name, team=team_scope(principal))


def _refused(status: int, message: str, problems: tuple[Problem, ...]) -> JSONResponse:
    listed = [
        {"field": f"Steps.{p.step}.{p.field}" if p.step else p.field, "problem": p.message}
        for p in problems
    ]
    return JSONResponse({"error": message, "problems": listed}, status_code=status)


def _pipeline(ops: PipelineOperations, stored: StoredPipeline) -> PipelineView:
    return PipelineView(
        name=stored.name,
        arn=ops.pipeline_arn(stored.name),
        team=stored.team,
        version=stored.version,
        description=stored.description,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        definition=orjson.loads(stored.definition),
    )


def _execution(stored: StoredExecution) -> ExecutionView:
    state = stored.state
    return ExecutionView(
        execution_id=state.identity.execution_id,
        arn=state.identity.execution_arn,
        pipeline_name=state.identity.pipeline_name,
        team=state.identity.team,
        owner=state.identity.owner,
        schedule=state.identity.schedule,
        status=state.status,
        started_at=state.started_at,
        ended_at=state.ended_at,
        failure_reason=state.failure_reason,
        parameters=dict(state.parameters),
        steps=[
            StepView(
                name=name,
                status=run.status,
                attempt=run.attempt,
                job_id=run.job_id,
                started_at=run.started_at,
                ended_at=run.ended_at,
                failure_reason=run.failure_reason,
                cache_hit_of=run.cache_hit_of,
                outcome=run.outcome,
                properties=None if run.properties is None else dict(run.properties),
            )
            for name, run in state.steps.items()
        ],
    )


def _schedule(stored: StoredSchedule) -> ScheduleView:
    schedule = stored.schedule
    return ScheduleView(
        name=schedule.name,
        pipeline=schedule.pipeline_name,
        team=stored.team,
        expression=schedule.expression,
        enabled=schedule.enabled,
        start_date=schedule.start_date,
        allow_overlap=schedule.allow_overlap,
        catch_up=schedule.catch_up,
        last_tick=stored.last_tick,
        last_execution_id=stored.last_execution_id,
    )
