"""The jobs API on Lambda, behind an API Gateway HTTP API (payload format 2.0).

API Gateway authenticates the caller (IAM signatures or a JWT authorizer); the caller is the
owner of every job they submit, and sees and stops only their own. Routes, bodies and error
answers are the HTTP API's (`stoker.api.app`): 201/200 on submit, 422 naming each bad field,
404 for a job that does not exist (or is someone else's), 409 when stopping a job that
ended, 503 when the store cannot be reached. Every submission goes through `JobService`,
like the HTTP API, the CLI and the intake consumer.

The owner is the JWT claim named by STOKER_LAMBDA_OWNER_CLAIM (default `sub`), or, with IAM,
the caller's principal: the user name, or `<role>/<session>` for an assumed role.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from pydantic import BaseModel

from stoker.api.app import ErrorBody, FieldProblem, JobPage, SubmitResponse
from stoker.app.aws_lambda.host import LambdaContext, LambdaHost
from stoker.app.runtime import Runtime
from stoker.core.errors import InfrastructureUnavailable, JobNotFound
from stoker.core.job import JobRecord, JobStatus
from stoker.lifecycle.jobs import InvalidJobSpec, JobAlreadyFinished, JobService, parse_spec

log = structlog.get_logger("stoker.app.aws_lambda.submit")

MAX_OWNER = 128
MAX_PAGE = 1000

HOST = LambdaHost()

Response = dict[str, Any]


class HttpError(Exception):
    """An answer other than success, with the API's error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        problems: list[FieldProblem] | None = None,
        status: JobStatus | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = ErrorBody(error=message, problems=problems or [], status=status)


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> Response:
    """Lambda entry point (`stoker.app.aws_lambda.submit.handler`)."""
    return handle(HOST, event, context)


def handle(host: LambdaHost, event: Mapping[str, Any], context: LambdaContext | None) -> Response:
    try:
        owner = caller(event, host.lambda_settings.owner_claim)
        return host.run(lambda rt: route(rt, owner, event))
    except HttpError as exc:
        return _answer(exc.status_code, exc.body)


async def route(rt: Runtime, owner: str, event: Mapping[str, Any]) -> Response:
    service = JobService(rt.transitioner(), rt.clock)
    route_key = str(event.get("routeKey", ""))
    job_id = (event.get("pathParameters") or {}).get("job_id")
    try:
        if route_key == "POST /v1/jobs":
            return await _submit(service, owner, event)
        if route_key == "GET /v1/jobs":
            return await _list(service, owner, event.get("queryStringParameters") or {})
        if isinstance(job_id, str) and job_id:
            if route_key == "GET /v1/jobs/{job_id}":
                return _answer(200, await _own(service, owner, job_id))
            if route_key == "GET /v1/jobs/{job_id}/history":
                await _own(service, owner, job_id)
                history = await service.history(job_id)
                return _answer(200, [line.model_dump(mode="json") for line in history])
            if route_key == "POST /v1/jobs/{job_id}/stop":
                await _own(service, owner, job_id)
                return _answer(200, await service.stop(job_id))
        raise HttpError(404, f"no route {route_key!r}")
    except InvalidJobSpec as exc:
        problems = [FieldProblem(field=k, problem=v) for k, v in exc.problems.items()]
        raise HttpError(422, "invalid job spec", problems=problems) from exc
    except JobNotFound as exc:
        raise HttpError(404, str(exc)) from exc
    except JobAlreadyFinished as exc:
        raise HttpError(409, str(exc), status=exc.job.status) from exc
    except InfrastructureUnavailable as exc:
        raise HttpError(503, f"temporarily unavailable: {exc}") from exc


async def _submit(service: JobService, owner: str, event: Mapping[str, Any]) -> Response:
    body = _body(event)
    given = body.get("owner")
    if given is not None and given != owner:
        raise HttpError(
            403,
            "owner: jobs are submitted for the caller only",
            problems=[FieldProblem(field="owner", problem=f"must be {owner!r} or left out")],
        )
    spec = parse_spec({**body, "owner": owner})
    job, created = await service.submit(spec)
    if created:
        log.info("job submitted", job_id=job.job_id, owner=owner)
    return _answer(201 if created else 200, SubmitResponse(created=created, job=job))


async def _list(service: JobService, owner: str, query: Mapping[str, Any]) -> Response:
    asked = query.get("owner")
    if asked is not None and asked != owner:
        raise HttpError(403, "owner: only the caller's own jobs are listed")
    status: JobStatus | None = None
    if query.get("status") is not None:
        try:
            status = JobStatus(query["status"])
        except ValueError as exc:
            allowed = ", ".join(s.value for s in JobStatus)
            raise _bad("status", f"expected one of {allowed}") from exc
    limit = 100
    if query.get("limit") is not None:
        text = str(query["limit"])
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
            raise _bad("limit", f"expected a whole number from 1 to {MAX_PAGE}")
        limit = int(text)
    page = await service.list_jobs(
        status=status, owner=owner, limit=limit, cursor=query.get("cursor")
    )
    return _answer(200, JobPage(items=page.items, next_cursor=page.next_cursor))


async def _own(service: JobService, owner: str, job_id: str) -> JobRecord:
    """The caller's job; someone else's is answered as not found, like a missing one."""
    job = await service.get(job_id)
    if job.owner != owner:
        raise JobNotFound(job_id)
    return job


def caller(event: Mapping[str, Any], owner_claim: str) -> str:
    """The authenticated caller, as API Gateway's authorizer describes them."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    if not isinstance(authorizer, dict):
        authorizer = {}
    jwt = authorizer.get("jwt")
    if isinstance(jwt, dict):
        value = (jwt.get("claims") or {}).get(owner_claim)
        if not isinstance(value, str) or not value:
            raise HttpError(403, f"the token has no {owner_claim!r} claim to name the owner")
        return _checked(value)
    iam = authorizer.get("iam")
    if isinstance(iam, dict) and isinstance(iam.get("userArn"), str):
        return _checked(principal(iam["userArn"]))
    raise HttpError(401, "no authenticated caller: the route needs IAM or JWT authorization")


def principal(arn: str) -> str:
    """`alice` for an IAM user, `<role>/<session>` for an assumed role."""
    resource = arn.split(":", 5)[-1]
    kind, _, name = resource.partition("/")
    if kind == "user":
        return name.rsplit("/", 1)[-1]
    if kind == "assumed-role":
        return name
    return resource


def _checked(owner: str) -> str:
    if len(owner) > MAX_OWNER:
        raise HttpError(403, f"the caller's name is longer than {MAX_OWNER} characters")
    return owner


def _body(event: Mapping[str, Any]) -> dict[str, Any]:
    raw = event.get("body")
    if raw is None:
        raise _bad("<body>", "a JSON object is required")
    try:
        text = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw
        doc = orjson.loads(text)
    except (binascii.Error, orjson.JSONDecodeError) as exc:
        raise _bad("<body>", f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _bad("<body>", "a JSON object is required")
    return doc


def _bad(field: str, problem: str) -> HttpError:
    return HttpError(422, "invalid request", problems=[FieldProblem(field=field, problem=problem)])


def _answer(status_code: int, body: BaseModel | list[Any]) -> Response:
    if isinstance(body, ErrorBody):
        payload: Any = body.model_dump(mode="json", exclude_none=True)
    elif isinstance(body, BaseModel):
        payload = body.model_dump(mode="json")
    else:
        payload = body
    return {
        "statusCode": status_code,
        "headers": {"content-type": "application/json"},
        "body": orjson.dumps(payload).decode(),
    }
