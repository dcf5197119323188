"""SageMaker's tag operations (`AddTags`, `ListTags`, `DeleteTags`) and `ListPipelineVersions`,
for pipelines: the resources stoker's SageMaker face keeps. A pipeline's ARN is
`arn:aws:sagemaker:<region>:000000000000:pipeline/<name>`; any other ARN is refused naming
`ResourceArn`."""

from __future__ import annotations

from typing import Any

from stoker.api.sagemaker_calls import Call, SageMakerError, in_range, page, with_token
from stoker.core.pipelines.records import StoredPipeline, Tag, old_versions


def _pipeline_name(call: Call) -> str:
    arn = str(call.body["ResourceArn"])
    prefix = call.ops.pipeline_arn("")
    name = arn.removeprefix(prefix)
    if not arn.startswith(prefix) or not name or "/" in name:
        raise SageMakerError(
            "ValidationException",
            f"ResourceArn: stoker keeps tags of pipelines only ({prefix}<name>), got {arn!r}",
        )
    return name


def _tags(stored: StoredPipeline) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in stored.tags]


def request_tags(body: dict[str, Any]) -> list[Tag] | None:
    """A request's `Tags` (a create's, an AddTags'), None when it has none."""
    raw = body.get("Tags")
    if raw is None:
        return None
    return [(str(tag["Key"]), str(tag.get("Value", ""))) for tag in raw]


async def add_tags(call: Call) -> dict[str, Any]:
    name = _pipeline_name(call)
    try:
        await call.ops.tag_pipeline(name, team=call.scope, add=request_tags(call.body))
    except ValueError as exc:
        raise SageMakerError("ValidationException", str(exc)) from exc
    return {"Tags": call.body["Tags"]}


async def list_tags(call: Call) -> dict[str, Any]:
    stored = await call.ops.get_pipeline(_pipeline_name(call), team=call.scope)
    shown, token = page(_tags(stored), call.body)
    return with_token({"Tags": shown}, token)


async def delete_tags(call: Call) -> dict[str, Any]:
    name = _pipeline_name(call)
    await call.ops.tag_pipeline(name, team=call.scope, remove=list(call.body["TagKeys"]))
    return {}


async def list_pipeline_versions(call: Call) -> dict[str, Any]:
    """Every version of the definition with the newest execution that ran it."""
    body = call.body
    name = body["PipelineName"]
    stored = await call.ops.get_pipeline(name, team=call.scope)
    last_run: dict[int, str] = {}
    for execution in reversed(await call.ops.list_executions(name, team=call.scope)):
        last_run[execution.pipeline_version] = execution.state.identity.execution_arn
    arn = call.ops.pipeline_arn(name)
    versions = [v for v in old_versions(stored) if in_range(v.created_at, body)]
    if body.get("SortOrder", "Descending") == "Descending":
        versions.reverse()
    summaries: list[dict[str, Any]] = []
    for version in versions:
        summary: dict[str, Any] = {
            "PipelineArn": arn,
            "PipelineVersionId": version.version,
            "CreationTime": version.created_at,
            "PipelineVersionDisplayName": str(version.version),
        }
        if version.description is not None:
            summary["PipelineVersionDescription"] = version.description
        if version.version in last_run:
            summary["LastExecutionPipelineExecutionArn"] = last_run[version.version]
        summaries.append(summary)
    shown, token = page(summaries, body)
    return with_token({"PipelineVersionSummaries": shown}, token)
