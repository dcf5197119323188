"""A pipeline's executions listed a page at a time over the store's cursors, through both
faces of the API (SageMaker's `ListPipelineExecutions` through botocore, and
`GET /v1/pipelines/{name}/executions`), on the memory, SQLite and DynamoDB Local stores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import botocore.exceptions
import httpx
import pytest

from tests.support.auth import bearer, mint
from tests.unit.pipelines.served import Served
from tests.unit.pipelines.test_sagemaker_api import call, definition

ROLE = "arn:aws:iam::000000000000:role/x"


async def five_executions(sm: Any) -> list[tuple[str, datetime]]:
    """(ARN, start time) of five executions of `gate`, oldest first. The default threshold
    fails them at once, in the engine, with no job."""
    await call(
        sm.create_pipeline, PipelineName="gate", PipelineDefinition=definition(), RoleArn=ROLE
    )
    started: list[tuple[str, datetime]] = []
    for _ in range(5):
        arn = (await call(sm.start_pipeline_execution, PipelineName="gate"))["PipelineExecutionArn"]
        described = await call(sm.describe_pipeline_execution, PipelineExecutionArn=arn)
        started.append((arn, described["CreationTime"]))
    return started


async def sagemaker_pages(sm: Any, **request: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token: dict[str, str] = {}
    while True:
        answer = await call(sm.list_pipeline_executions, PipelineName="gate", **request, **token)
        pages.append([e["PipelineExecutionArn"] for e in answer["PipelineExecutionSummaries"]])
        if "NextToken" not in answer:
            return pages
        token = {"NextToken": answer["NextToken"]}


async def test_sagemaker_pages_by_creation_time_both_ways_and_between_times(
    served_on: Served,
) -> None:
    sm = await served_on.client()
    started = await five_executions(sm)
    arns = [arn for arn, _ in started]

    newest = await sagemaker_pages(sm, MaxResults=2)
    assert newest == [arns[4:2:-1], arns[2:0:-1], arns[:1]]
    oldest = await sagemaker_pages(sm, MaxResults=2, SortBy="CreationTime", SortOrder="Ascending")
    assert oldest == [arns[0:2], arns[2:4], arns[4:]]

    # botocore sends whole seconds; the wire takes fractions, so bounds between start
    # times go as raw AWS JSON: the third and fourth started strictly inside them.
    after = (started[1][1] + (started[2][1] - started[1][1]) / 2).timestamp()
    before = (started[3][1] + (started[4][1] - started[3][1]) / 2).timestamp()
    between = {"CreatedAfter": after, "CreatedBefore": before, "MaxResults": 1}
    assert await wire_pages(served_on, between) == [[arns[3]], [arns[2]]]
    upward = {"SortOrder": "Ascending", **between}
    assert await wire_pages(served_on, upward) == [[arns[2]], [arns[3]]]
    later = started[4][1] + timedelta(seconds=1)
    assert await sagemaker_pages(sm, CreatedAfter=later) == [[]]
    assert await sagemaker_pages(sm, CreatedBefore=later, MaxResults=5) == [arns[::-1]]


async def wire_pages(served: Served, request: dict[str, Any]) -> list[list[str]]:
    token = await mint(served.tokens, "ana", "search")
    headers = {
        "X-Amz-Target": "SageMaker.ListPipelineExecutions",
        "Content-Type": "application/x-amz-json-1.1",
        **bearer(token),
    }
    body: dict[str, Any] = {"PipelineName": "gate", **request}
    pages: list[list[str]] = []
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as http:
        while True:
            answer = (await http.post("/", content=json.dumps(body))).json()
            pages.append([e["PipelineExecutionArn"] for e in answer["PipelineExecutionSummaries"]])
            if "NextToken" not in answer:
                return pages
            body["NextToken"] = answer["NextToken"]


async def test_sagemaker_pages_by_arn(served_on: Served) -> None:
    sm = await served_on.client()
    arns = [arn for arn, _ in await five_executions(sm)]
    pages = await sagemaker_pages(sm, MaxResults=2, SortBy="PipelineExecutionArn")
    assert pages == [sorted(arns, reverse=True)[i : i + 2] for i in (0, 2, 4)]
    upward = await sagemaker_pages(
        sm, MaxResults=3, SortBy="PipelineExecutionArn", SortOrder="Ascending"
    )
    assert upward == [sorted(arns)[:3], sorted(arns)[3:]]


async def test_sagemaker_refuses_a_bad_token_or_sort_naming_the_field(served: Served) -> None:
    sm = await served.client()
    await five_executions(sm)
    first = await call(sm.list_pipeline_executions, PipelineName="gate", MaxResults=2)
    refusals = {
        "NextToken": {"NextToken": "not-a-token"},
        "SortOrder": {"SortOrder": "Sideways"},
        "SortBy": {"SortBy": "Status"},
    }
    for field, request in refusals.items():
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            await call(sm.list_pipeline_executions, PipelineName="gate", **request)
        error = refused.value.response["Error"]
        assert error["Code"] == "ValidationException"
        assert error["Message"].startswith(f"{field}:")
    # A creation-time token is not a token of the ARN order.
    with pytest.raises(botocore.exceptions.ClientError, match="NextToken"):
        await call(
            sm.list_pipeline_executions,
            PipelineName="gate",
            SortBy="PipelineExecutionArn",
            NextToken=first["NextToken"],
        )
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFound"):
        await call(sm.list_pipeline_executions, PipelineName="nowhere")


async def test_http_pages_follow_next_cursor(served_on: Served) -> None:
    sm = await served_on.client()
    ids = [arn.rsplit("/", 1)[-1] for arn, _ in await five_executions(sm)]
    token = await mint(served_on.tokens, "ana", "search")
    async with httpx.AsyncClient(base_url=served_on.url, headers=bearer(token)) as http:
        for oldest_first, expected in ((False, ids[::-1]), (True, ids)):
            pages: list[list[str]] = []
            params: dict[str, Any] = {"limit": 2, "oldest_first": oldest_first}
            while True:
                page = (await http.get("/v1/pipelines/gate/executions", params=params)).json()
                pages.append([e["execution_id"] for e in page["items"]])
                if page["next_cursor"] is None:
                    break
                params["cursor"] = page["next_cursor"]
            assert pages == [expected[0:2], expected[2:4], expected[4:]]

        bad = await http.get("/v1/pipelines/gate/executions", params={"cursor": "%%%"})
        assert bad.status_code == 400
        assert bad.json()["problems"][0]["field"] == "cursor"
        empty = await http.get("/v1/pipelines/gate/executions", params={"limit": 0})
        assert empty.status_code == 422

    theirs = await mint(served_on.tokens, "bo", "ads")
    async with httpx.AsyncClient(base_url=served_on.url, headers=bearer(theirs)) as http:
        assert (await http.get("/v1/pipelines/gate/executions")).status_code == 404
