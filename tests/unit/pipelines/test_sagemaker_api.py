"""SageMaker's pipeline operations on stoker's API, called by a real botocore client over
HTTP (botocore's own serializer and parser, the AWS JSON 1.1 protocol) against the API
under uvicorn on a loopback port. The pipelines hold condition and fail steps, which the
engine decides in place, and one training step whose job is submitted to the job store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
import httpx
import pytest

from stoker.core.auth import Role
from tests.support.auth import mint
from tests.unit.lifecycle.conftest import spec
from tests.unit.pipelines.served import Served


def definition(**overrides: Any) -> str:
    train = {"Name": "Train", "Type": "Training", "Arguments": spec("x")["training"]}
    doc: dict[str, Any] = {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [{"Name": "Threshold", "Type": "Integer", "DefaultValue": 1}],
        "Steps": [
            {
                "Name": "Check",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "GreaterThanOrEqualTo",
                            "LeftValue": {"Get": "Parameters.Threshold"},
                            "RightValue": 3,
                        }
                    ],
                    "IfSteps": [train],
                    "ElseSteps": [
                        {
                            "Name": "TooLow",
                            "Type": "Fail",
                            "Arguments": {"ErrorMessage": "threshold below 3"},
                        }
                    ],
                },
            }
        ],
    }
    doc.update(overrides)
    return json.dumps(doc)


async def call(method: Callable[..., Any], **kwargs: Any) -> Any:
    """A blocking botocore call off the event loop that serves it."""
    return await asyncio.to_thread(method, **kwargs)


async def test_create_start_describe_list_steps(served: Served) -> None:
    sm = await served.client()
    created = await call(
        sm.create_pipeline,
        PipelineName="gate",
        PipelineDefinition=definition(),
        RoleArn="arn:aws:iam::000000000000:role/x",
        PipelineDescription="a gate",
    )
    assert created["PipelineArn"].endswith(":pipeline/gate")

    described = await call(sm.describe_pipeline, PipelineName="gate")
    assert json.loads(described["PipelineDefinition"]) == json.loads(definition())
    assert described["PipelineDescription"] == "a gate"
    assert described["PipelineStatus"] == "Active"

    started = await call(
        sm.start_pipeline_execution,
        PipelineName="gate",
        PipelineParameters=[{"Name": "Threshold", "Value": "2"}],
    )
    arn = started["PipelineExecutionArn"]
    execution = await call(sm.describe_pipeline_execution, PipelineExecutionArn=arn)
    assert execution["PipelineExecutionStatus"] == "Failed"
    assert execution["FailureReason"] == "step 'TooLow' failed: threshold below 3"
    assert execution["PipelineArn"] == created["PipelineArn"]

    steps = (await call(sm.list_pipeline_execution_steps, PipelineExecutionArn=arn))[
        "PipelineExecutionSteps"
    ]
    assert {s["StepName"]: s["StepStatus"] for s in steps} == {
        "Check": "Succeeded",
        "TooLow": "Failed",
    }
    by_name = {s["StepName"]: s for s in steps}
    assert by_name["Check"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert by_name["TooLow"]["Metadata"] == {"Fail": {"ErrorMessage": "threshold below 3"}}

    parameters = await call(sm.list_pipeline_parameters_for_execution, PipelineExecutionArn=arn)
    assert parameters["PipelineParameters"] == [{"Name": "Threshold", "Value": "2"}]
    listed = await call(sm.list_pipeline_executions, PipelineName="gate")
    assert [e["PipelineExecutionArn"] for e in listed["PipelineExecutionSummaries"]] == [arn]
    names = [p["PipelineName"] for p in (await call(sm.list_pipelines))["PipelineSummaries"]]
    assert names == ["gate"]


async def test_a_training_step_becomes_a_job_and_a_stop_stops_it(served: Served) -> None:
    sm = await served.client()
    await call(
        sm.create_pipeline,
        PipelineName="gate",
        PipelineDefinition=definition(),
        RoleArn="arn:aws:iam::000000000000:role/x",
    )
    arn = (
        await call(
            sm.start_pipeline_execution,
            PipelineName="gate",
            PipelineParameters=[{"Name": "Threshold", "Value": "5"}],
        )
    )["PipelineExecutionArn"]
    steps = (await call(sm.list_pipeline_execution_steps, PipelineExecutionArn=arn))[
        "PipelineExecutionSteps"
    ]
    train = next(s for s in steps if s["StepName"] == "Train")
    assert train["StepStatus"] == "Executing"
    assert train["AttemptCount"] == 1
    job_id = arn.rsplit("/", 1)[1] + ".Train.1"
    assert train["Metadata"]["TrainingJob"]["Arn"].endswith(f":training-job/{job_id.lower()}")
    job = await served.jobs.get(job_id, team="search")
    assert job.owner == "ana"

    stopped = await call(sm.stop_pipeline_execution, PipelineExecutionArn=arn)
    assert stopped["PipelineExecutionArn"] == arn
    execution = await call(sm.describe_pipeline_execution, PipelineExecutionArn=arn)
    assert execution["PipelineExecutionStatus"] == "Stopping"
    assert (await served.jobs.get(job_id, team="search")).status.value in ("Stopping", "Stopped")


async def test_create_of_an_existing_name_says_it_exists_and_update_replaces(
    served: Served,
) -> None:
    """The SDK's upsert() creates, and on a ResourceInUse saying "already exists"
    updates."""
    sm = await served.client()
    role = "arn:aws:iam::000000000000:role/x"
    await call(sm.create_pipeline, PipelineName="p", PipelineDefinition=definition(), RoleArn=role)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(
            sm.create_pipeline, PipelineName="p", PipelineDefinition=definition(), RoleArn=role
        )
    assert refused.value.response["Error"]["Code"] == "ResourceInUse"
    assert "already exists" in refused.value.response["Error"]["Message"]

    changed = definition(Parameters=[{"Name": "Threshold", "Type": "Integer", "DefaultValue": 7}])
    updated = await call(sm.update_pipeline, PipelineName="p", PipelineDefinition=changed)
    assert updated["PipelineVersionId"] == 2
    described = await call(sm.describe_pipeline, PipelineName="p")
    assert described["PipelineDefinition"] == changed

    deleted = await call(sm.delete_pipeline, PipelineName="p")
    assert deleted["PipelineArn"].endswith(":pipeline/p")
    with pytest.raises(sm.exceptions.ResourceNotFound):
        await call(sm.describe_pipeline, PipelineName="p")


async def test_a_bad_definition_is_refused_naming_step_and_field(served: Served) -> None:
    sm = await served.client()
    bad = json.loads(definition())
    bad["Steps"].append({"Name": "Late", "Type": "Training", "DependsOn": ["Nowhere"]})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(
            sm.create_pipeline,
            PipelineName="bad",
            PipelineDefinition=json.dumps(bad),
            RoleArn="arn:aws:iam::000000000000:role/x",
        )
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "step 'Late': DependsOn" in error["Message"]
    with pytest.raises(sm.exceptions.ResourceNotFound):
        await call(sm.describe_pipeline, PipelineName="bad")


async def test_a_bad_parameter_is_refused_before_anything_starts(served: Served) -> None:
    sm = await served.client()
    role = "arn:aws:iam::000000000000:role/x"
    await call(sm.create_pipeline, PipelineName="p", PipelineDefinition=definition(), RoleArn=role)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(
            sm.start_pipeline_execution,
            PipelineName="p",
            PipelineParameters=[{"Name": "Threshold", "Value": "many"}],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Parameters.Threshold" in refused.value.response["Error"]["Message"]
    listed = await call(sm.list_pipeline_executions, PipelineName="p")
    assert listed["PipelineExecutionSummaries"] == []


async def test_another_teams_pipelines_are_not_found(served: Served) -> None:
    mine, theirs = await served.client("search"), await served.client("ads")
    role = "arn:aws:iam::000000000000:role/x"
    await call(
        mine.create_pipeline, PipelineName="p", PipelineDefinition=definition(), RoleArn=role
    )
    arn = (
        await call(
            mine.start_pipeline_execution,
            PipelineName="p",
            PipelineParameters=[{"Name": "Threshold", "Value": "1"}],
        )
    )["PipelineExecutionArn"]
    assert (await call(theirs.list_pipelines))["PipelineSummaries"] == []
    with pytest.raises(theirs.exceptions.ResourceNotFound):
        await call(theirs.describe_pipeline, PipelineName="p")
    with pytest.raises(theirs.exceptions.ResourceNotFound):
        await call(theirs.describe_pipeline_execution, PipelineExecutionArn=arn)
    with pytest.raises(theirs.exceptions.ResourceNotFound):
        await call(theirs.start_pipeline_execution, PipelineName="p")
    with pytest.raises(theirs.exceptions.ResourceNotFound):
        await call(theirs.delete_pipeline, PipelineName="p")


async def test_a_viewer_reads_but_does_not_write(served: Served) -> None:
    viewer = await served.client(role=Role.VIEWER)
    assert (await call(viewer.list_pipelines))["PipelineSummaries"] == []
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(
            viewer.create_pipeline,
            PipelineName="p",
            PipelineDefinition=definition(),
            RoleArn="arn:aws:iam::000000000000:role/x",
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


async def test_the_wire_without_a_token_or_with_a_bad_request(served: Served) -> None:
    headers = {
        "X-Amz-Target": "SageMaker.ListPipelines",
        "Content-Type": "application/x-amz-json-1.1",
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        anonymous = await http.post("/", content=b"{}", headers=headers)
        assert anonymous.status_code == 401
        assert anonymous.json()["__type"] == "UnrecognizedClientException"

        token = await mint(served.tokens, "ana", "search")
        authed = {**headers, "Authorization": f"Bearer {token}"}
        listed = await http.post("/", content=b"{}", headers=authed)
        assert listed.status_code == 200
        assert listed.json() == {"PipelineSummaries": []}

        create = {**authed, "X-Amz-Target": "SageMaker.CreatePipeline"}
        missing = await http.post("/", content=b'{"PipelineName": "p"}', headers=create)
        assert missing.status_code == 400
        body = missing.json()
        assert body["__type"] == "ValidationException"
        assert "RoleArn" in body["message"]
        assert "ClientRequestToken" in body["message"]

        other = {**authed, "X-Amz-Target": "SageMaker.CreateTrainingJob"}
        unknown = await http.post("/", content=b"{}", headers=other)
        assert unknown.json()["__type"] == "UnknownOperationException"


async def test_listing_pages_and_filters(served: Served) -> None:
    sm = await served.client()
    role = "arn:aws:iam::000000000000:role/x"
    for name in ("a-one", "a-two", "b-three"):
        await call(
            sm.create_pipeline, PipelineName=name, PipelineDefinition=definition(), RoleArn=role
        )
    first = await call(sm.list_pipelines, MaxResults=2, SortBy="Name", SortOrder="Ascending")
    assert [p["PipelineName"] for p in first["PipelineSummaries"]] == ["a-one", "a-two"]
    rest = await call(
        sm.list_pipelines,
        MaxResults=2,
        SortBy="Name",
        SortOrder="Ascending",
        NextToken=first["NextToken"],
    )
    assert [p["PipelineName"] for p in rest["PipelineSummaries"]] == ["b-three"]
    assert "NextToken" not in rest
    prefixed = await call(sm.list_pipelines, PipelineNamePrefix="a-")
    assert sorted(p["PipelineName"] for p in prefixed["PipelineSummaries"]) == ["a-one", "a-two"]
    later = await call(sm.list_pipelines, CreatedAfter=datetime.now(UTC) + timedelta(hours=1))
    assert later["PipelineSummaries"] == []
