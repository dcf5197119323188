"""SageMaker's pipeline operations on stoker's API, in SageMaker's own protocol (AWS JSON 1.1).

`POST /` with `X-Amz-Target: SageMaker.<Operation>` and a JSON body, as botocore's sagemaker
client sends it, so boto3 and the `sagemaker` SDK work unchanged with `endpoint_url` set to
stoker's API. Requests are checked against botocore's own model of the operation (the
checks every boto3 client runs before sending); answers carry SageMaker's response shapes
with timestamps as epoch seconds; errors are `{"__type", "message"}` with HTTP 400 (or 401,
403), the codes SageMaker uses: `ValidationException` (a bad definition names each step and
field), `ResourceNotFound`, `UnrecognizedClientException` (no valid bearer token),
`AccessDeniedException` (a viewer's write).

Authentication is the API's bearer token, like every route: a boto3 client carries it with
`stoker.boto_auth.use_bearer_token` (a botocore event hook), and the caller sees only its
team's pipelines and executions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import botocore.session
import orjson
import structlog
from botocore.model import ServiceModel
from botocore.validate import ParamValidator
from fastapi import FastAPI, Request
from fastapi.responses import Response

from stoker.api.sagemaker_calls import Call, Handler, SageMakerError, in_range, page, with_token
from stoker.api.sagemaker_executions import execution_summary, list_executions
from stoker.api.sagemaker_tags import (
    add_tags,
    delete_tags,
    list_pipeline_versions,
    list_tags,
    request_tags,
)
from stoker.core.auth import Forbidden, Principal, Role, Unauthenticated
from stoker.core.errors import ItemTooLarge
from stoker.core.pipelines import DefinitionError, ParameterError
from stoker.core.pipelines.records import (
    ExecutionNotFound,
    PipelineNotFound,
    StoredExecution,
    StoredPipeline,
    old_versions,
)
from stoker.core.pipelines.state import StepRun, StepStatus
from stoker.pipelines.operations import DefinitionUnreadable, PipelineExists, PipelineOperations
from stoker.ports.auth import Authenticator

log = structlog.get_logger("stoker.api.sagemaker")

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "SageMaker."
_WRITES = {
    "AddTags",
    "DeleteTags",
    "CreatePipeline",
    "UpdatePipeline",
    "DeletePipeline",
    "StartPipelineExecution",
    "StopPipelineExecution",
}


def add_sagemaker_pipelines(
    app: FastAPI, ops: PipelineOperations, authenticator: Authenticator
) -> None:
    """Serve the pipeline operations at `POST /` of `app`."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    validator = ParamValidator()
    handlers = _handlers()

    @app.post("/", include_in_schema=False)
    async def sagemaker(request: Request) -> Response:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        try:
            if not target.startswith(TARGET_PREFIX) or operation not in handlers:
                raise SageMakerError(
                    "UnknownOperationException",
                    f"stoker serves SageMaker's pipeline operations only, not {target!r}",
                )
            principal = await _authenticate(request, authenticator)
            if operation in _WRITES and principal.role is Role.VIEWER:
                raise SageMakerError(
                    "AccessDeniedException", "a viewer token may read, not change", 403
                )
            body = _body(await request.body())
            _validate(validator, model, operation, body)
            answer = await handlers[operation](Call(ops, principal, body))
            return _answer(200, answer)
        except SageMakerError as exc:
            return _answer(exc.status, {"__type": exc.code, "message": exc.message})
        except (PipelineNotFound, ExecutionNotFound) as exc:
            return _answer(400, {"__type": "ResourceNotFound", "message": str(exc)})
        except PipelineExists as exc:
            # SageMaker's code for a name in use; its "already exists" is what the SDK's
            # upsert() reads as its cue to update.
            return _answer(400, {"__type": "ResourceInUse", "message": str(exc)})
        except (DefinitionError, ParameterError, DefinitionUnreadable, ItemTooLarge) as exc:
            return _answer(400, {"__type": "ValidationException", "message": _refusal(exc)})


def _refusal(exc: Exception) -> str:
    """A refused request's message; a value too large for the store names its field."""
    return f"{exc.field}: {exc}" if isinstance(exc, ItemTooLarge) else str(exc)


async def _authenticate(request: Request, authenticator: Authenticator) -> Principal:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SageMakerError(
            "UnrecognizedClientException",
            "a stoker bearer token is required: Authorization: Bearer <token> "
            "(stoker.boto_auth.use_bearer_token adds it to a boto3 client)",
            401,
        )
    try:
        principal = await authenticator.authenticate(token.strip())
    except Unauthenticated as exc:
        log.info("request refused: not authenticated", reason=str(exc))
        raise SageMakerError("UnrecognizedClientException", str(exc), 401) from exc
    except Forbidden as exc:
        raise SageMakerError("AccessDeniedException", str(exc), 403) from exc
    return principal


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise SageMakerError("SerializationException", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise SageMakerError("SerializationException", "the body must be a JSON object")
    return body


def _validate(
    validator: ParamValidator, model: ServiceModel, operation: str, body: dict[str, Any]
) -> None:
    """botocore's own checks of the request; timestamps come as epoch seconds on the wire,
    which the model (wanting datetimes) accepts as numbers too."""
    shape = model.operation_model(operation).input_shape
    if shape is None:
        return
    report = validator.validate(body, shape)
    if report.has_errors():
        raise SageMakerError("ValidationException", report.generate_report())


def _answer(status: int, payload: dict[str, Any]) -> Response:
    return Response(
        content=orjson.dumps(payload, default=_encode),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def _encode(value: object) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot encode {type(value).__name__}")


# The operations


def _handlers() -> dict[str, Handler]:
    return {
        "CreatePipeline": _create_pipeline,
        "UpdatePipeline": _update_pipeline,
        "DescribePipeline": _describe_pipeline,
        "ListPipelines": _list_pipelines,
        "DeletePipeline": _delete_pipeline,
        "StartPipelineExecution": _start_execution,
        "DescribePipelineExecution": _describe_execution,
        "ListPipelineExecutions": list_executions,
        "ListPipelineExecutionSteps": _list_steps,
        "StopPipelineExecution": _stop_execution,
        "ListPipelineParametersForExecution": _list_parameters,
        "ListPipelineVersions": list_pipeline_versions,
        "AddTags": add_tags,
        "ListTags": list_tags,
        "DeleteTags": delete_tags,
    }


async def _definition(call: Call, required: bool) -> str | None:
    """The request's definition: inline (`PipelineDefinition`) or an object of the object
    store (`PipelineDefinitionS3Location`, where the SDK puts one past 100 KB)."""
    body = call.body
    location = body.get("PipelineDefinitionS3Location")
    if location is not None:
        if "PipelineDefinition" in body:
            raise SageMakerError(
                "ValidationException",
                "PipelineDefinition, PipelineDefinitionS3Location: give one of the two",
            )
        return await call.ops.read_definition(
            location["Bucket"], location["ObjectKey"], location.get("VersionId")
        )
    definition = body.get("PipelineDefinition")
    if definition is None and required:
        raise SageMakerError(
            "ValidationException",
            "PipelineDefinition: required field is missing (or give PipelineDefinitionS3Location)",
        )
    return definition if isinstance(definition, str) else None


async def _create_pipeline(call: Call) -> dict[str, Any]:
    name = call.body["PipelineName"]
    definition = await _definition(call, required=True)
    assert definition is not None
    try:
        upserted = await call.ops.put_pipeline(
            name,
            definition,
            team=call.principal.team,
            description=call.body.get("PipelineDescription"),
            create_only=True,
            tags=request_tags(call.body) or [],
        )
    except ValueError as exc:  # too many tags
        raise SageMakerError("ValidationException", str(exc)) from exc
    return {"PipelineArn": call.ops.pipeline_arn(upserted.pipeline.name)}


async def _update_pipeline(call: Call) -> dict[str, Any]:
    name = call.body["PipelineName"]
    current = await call.ops.get_pipeline(name, team=call.scope)
    definition = await _definition(call, required=False) or current.definition
    upserted = await call.ops.put_pipeline(
        name,
        definition,
        team=current.team,
        description=call.body.get("PipelineDescription"),
        update_only=True,
    )
    return {
        "PipelineArn": call.ops.pipeline_arn(name),
        "PipelineVersionId": upserted.pipeline.version,
    }


async def _describe_pipeline(call: Call) -> dict[str, Any]:
    """The newest version, or the one `PipelineVersionId` names: an older version's
    definition is the one its executions kept (ResourceNotFound when none ran it)."""
    pipeline = await call.ops.get_pipeline(call.body["PipelineName"], team=call.scope)
    wanted = call.body.get("PipelineVersionId", pipeline.version)
    versions = {v.version: v for v in old_versions(pipeline)}
    if wanted not in versions:
        raise SageMakerError(
            "ResourceNotFound",
            f"PipelineVersionId: pipeline {pipeline.name!r} has no version {wanted}",
        )
    definition = pipeline.definition
    if wanted != pipeline.version:
        definition = await _kept_definition(call, pipeline.name, wanted)
    answer = _pipeline_summary(call, pipeline)
    answer.update(
        PipelineDefinition=definition,
        PipelineStatus="Active",
        PipelineVersionDisplayName=str(wanted),
    )
    if versions[wanted].description is not None:
        answer["PipelineVersionDescription"] = versions[wanted].description
    return answer


async def _kept_definition(call: Call, name: str, version: int) -> str:
    for execution in await call.ops.list_executions(name, team=call.scope):
        if execution.pipeline_version == version:
            return execution.definition
    raise SageMakerError(
        "ResourceNotFound",
        f"PipelineVersionId: stoker keeps the definition of version {version} of {name!r} "
        "only with the executions that ran it, and none did",
    )


def _pipeline_summary(call: Call, pipeline: StoredPipeline) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "PipelineArn": call.ops.pipeline_arn(pipeline.name),
        "PipelineName": pipeline.name,
        "PipelineDisplayName": pipeline.name,
        "CreationTime": pipeline.created_at,
        "LastModifiedTime": pipeline.updated_at,
    }
    if pipeline.description is not None:
        answer["PipelineDescription"] = pipeline.description
    return answer


async def _list_pipelines(call: Call) -> dict[str, Any]:
    body = call.body
    prefix = body.get("PipelineNamePrefix", "")
    pipelines = [
        p
        for p in await call.ops.list_pipelines(team=call.scope)
        if p.name.startswith(prefix) and in_range(p.created_at, body)
    ]
    by_name = body.get("SortBy") == "Name"
    pipelines.sort(key=lambda p: p.name if by_name else p.created_at.isoformat())
    if body.get("SortOrder", "Descending") == "Descending":
        pipelines.reverse()
    shown, token = page(pipelines, body)
    return with_token({"PipelineSummaries": [_pipeline_summary(call, p) for p in shown]}, token)


async def _delete_pipeline(call: Call) -> dict[str, Any]:
    pipeline = await call.ops.delete_pipeline(call.body["PipelineName"], team=call.scope)
    return {"PipelineArn": call.ops.pipeline_arn(pipeline.name)}


async def _start_execution(call: Call) -> dict[str, Any]:
    body = call.body
    parameters = {p["Name"]: p["Value"] for p in body.get("PipelineParameters", [])}
    version = body.get("PipelineVersionId")
    if version is not None:
        current = await call.ops.get_pipeline(body["PipelineName"], team=call.scope)
        if version != current.version:
            raise SageMakerError(
                "ValidationException",
                f"PipelineVersionId: stoker starts the newest version of a pipeline "
                f"({current.version}), not {version}",
            )
    stored = await call.ops.start_execution(
        body["PipelineName"], parameters, team=call.scope, owner=call.principal.subject
    )
    return {"PipelineExecutionArn": stored.state.identity.execution_arn}


async def _execution(call: Call) -> StoredExecution:
    arn = call.body.get("PipelineExecutionArn")
    if not isinstance(arn, str) or "/execution/" not in arn:
        raise SageMakerError(
            "ValidationException",
            f"PipelineExecutionArn: expected a pipeline execution ARN "
            f"(arn:aws:sagemaker:...:pipeline/<name>/execution/<id>), got {arn!r}",
        )
    execution_id = arn.rsplit("/execution/", 1)[1]
    stored = await call.ops.get_execution(execution_id, team=call.scope)
    if stored.state.identity.execution_arn != arn:
        raise ExecutionNotFound(execution_id)
    return stored


async def _describe_execution(call: Call) -> dict[str, Any]:
    stored = await _execution(call)
    state = stored.state
    answer = execution_summary(stored)
    answer.update(
        PipelineArn=state.identity.pipeline_arn,
        CreationTime=state.started_at,
        LastModifiedTime=state.ended_at or _last_change(stored),
        CreatedBy={"UserProfileName": state.identity.owner or state.identity.schedule or ""},
        PipelineVersionId=stored.pipeline_version,
    )
    answer.pop("StartTime")
    if state.failure_reason is not None:
        answer["FailureReason"] = answer.pop("PipelineExecutionFailureReason")
    return answer


def _last_change(stored: StoredExecution) -> datetime:
    times = [stored.state.started_at]
    for run in stored.state.steps.values():
        times.extend(t for t in (run.started_at, run.ended_at) if t is not None)
    return max(times)


_STEP_STATUS = {
    StepStatus.EXECUTING: "Executing",
    StepStatus.RETRY_SCHEDULED: "Executing",
    StepStatus.STOPPING: "Stopping",
    StepStatus.SUCCEEDED: "Succeeded",
    StepStatus.FAILED: "Failed",
    StepStatus.STOPPED: "Stopped",
}
"""Steps that started, as SageMaker lists them; pending, skipped and never started steps
are not listed (as on SageMaker, where a branch not taken shows no steps)."""


async def _list_steps(call: Call) -> dict[str, Any]:
    stored = await _execution(call)
    definition_steps = _definition_steps(stored)
    listed = [
        (name, run)
        for name, run in stored.state.steps.items()
        if run.status in _STEP_STATUS and run.started_at is not None
    ]
    listed.sort(key=lambda item: (item[1].started_at or stored.state.started_at, item[0]))
    if call.body.get("SortOrder", "Descending") == "Descending":
        listed.reverse()
    steps = [_step(stored, name, run, definition_steps.get(name, "")) for name, run in listed]
    shown, token = page(steps, call.body)
    return with_token({"PipelineExecutionSteps": shown}, token)


def _definition_steps(stored: StoredExecution) -> dict[str, str]:
    """Step name -> step type, from the definition the execution runs (branches too)."""
    found: dict[str, str] = {}

    def walk(steps: Any) -> None:
        for raw in steps if isinstance(steps, list) else []:
            if isinstance(raw, dict) and isinstance(raw.get("Name"), str):
                found[raw["Name"]] = str(raw.get("Type", ""))
                arguments = raw.get("Arguments")
                if isinstance(arguments, dict):
                    walk(arguments.get("IfSteps"))
                    walk(arguments.get("ElseSteps"))

    walk(orjson.loads(stored.definition).get("Steps"))
    return found


def _step(stored: StoredExecution, name: str, run: StepRun, step_type: str) -> dict[str, Any]:
    step: dict[str, Any] = {
        "StepName": name,
        "StepDisplayName": name,
        "StepStatus": _STEP_STATUS[run.status],
        "AttemptCount": run.attempt,
        "Metadata": _metadata(stored, run, step_type),
    }
    if run.started_at is not None:
        step["StartTime"] = run.started_at
    if run.ended_at is not None:
        step["EndTime"] = run.ended_at
    if run.failure_reason is not None:
        step["FailureReason"] = run.failure_reason
    if run.cache_hit_of is not None:
        arn = stored.state.identity.pipeline_arn
        source = f"{arn}/execution/{run.cache_hit_of}"
        step["CacheHitResult"] = {"SourcePipelineExecutionArn": source}
    return step


def _metadata(stored: StoredExecution, run: StepRun, step_type: str) -> dict[str, Any]:
    identity = stored.state.identity
    prefix = identity.pipeline_arn.split(":pipeline/", 1)[0]
    properties = run.properties or {}
    if step_type in ("Training", "Processing") and run.job_id is not None:
        key = "TrainingJob" if step_type == "Training" else "ProcessingJob"
        job_name = str(properties.get(f"{key}Name", run.job_id))
        kind = "training-job" if step_type == "Training" else "processing-job"
        return {key: {"Arn": f"{prefix}:{kind}/{job_name.lower()}"}}
    if step_type == "Condition" and run.outcome is not None:
        return {"Condition": {"Outcome": "True" if run.outcome else "False"}}
    if step_type == "Fail":
        return {"Fail": {"ErrorMessage": run.failure_reason or ""}}
    return {}


async def _stop_execution(call: Call) -> dict[str, Any]:
    stored = await _execution(call)
    await call.ops.stop_execution(stored.execution_id, team=call.scope)
    return {"PipelineExecutionArn": stored.state.identity.execution_arn}


async def _list_parameters(call: Call) -> dict[str, Any]:
    stored = await _execution(call)
    parameters = [
        {"Name": name, "Value": _text(value)} for name, value in stored.state.parameters.items()
    ]
    shown, token = page(parameters, call.body)
    return with_token({"PipelineParameters": shown}, token)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
