"""Tags, versions, definitions in S3 and racing creates on SageMaker's pipeline face, called
by a real botocore client over HTTP; `PipelineDefinitionS3Location` is read from moto's S3
server through the S3 wire protocol."""

from __future__ import annotations

import asyncio
import json

import boto3
import botocore.exceptions
import pytest

from tests.unit.pipelines.served import Served
from tests.unit.pipelines.test_sagemaker_api import call, definition

ROLE = "arn:aws:iam::000000000000:role/x"


def error_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


async def test_tags_are_kept_added_listed_and_deleted(served: Served) -> None:
    sm = await served.client()
    created = await call(
        sm.create_pipeline,
        PipelineName="tagged",
        PipelineDefinition=definition(),
        RoleArn=ROLE,
        Tags=[{"Key": "owner", "Value": "ana"}, {"Key": "stage", "Value": "dev"}],
    )
    arn = created["PipelineArn"]
    listed = await call(sm.list_tags, ResourceArn=arn)
    assert listed["Tags"] == [{"Key": "owner", "Value": "ana"}, {"Key": "stage", "Value": "dev"}]

    # What the SDK's upsert(tags=...) of an existing pipeline sends: old and new tags.
    added = await call(
        sm.add_tags,
        ResourceArn=arn,
        Tags=[{"Key": "stage", "Value": "prod"}, {"Key": "cost", "Value": "ml"}],
    )
    assert added["Tags"] == [{"Key": "stage", "Value": "prod"}, {"Key": "cost", "Value": "ml"}]
    await call(sm.delete_tags, ResourceArn=arn, TagKeys=["owner", "absent"])
    listed = await call(sm.list_tags, ResourceArn=arn)
    assert listed["Tags"] == [{"Key": "stage", "Value": "prod"}, {"Key": "cost", "Value": "ml"}]

    # An update keeps the tags; tags are no new version.
    await call(sm.update_pipeline, PipelineName="tagged", PipelineDefinition=definition())
    versions = await call(sm.list_pipeline_versions, PipelineName="tagged")
    assert [v["PipelineVersionId"] for v in versions["PipelineVersionSummaries"]] == [2, 1]
    assert len((await call(sm.list_tags, ResourceArn=arn))["Tags"]) == 2


async def test_tags_of_what_is_not_a_pipeline_or_another_teams_are_refused(
    served: Served,
) -> None:
    sm = await served.client()
    created = await call(
        sm.create_pipeline, PipelineName="mine", PipelineDefinition=definition(), RoleArn=ROLE
    )
    job_arn = "arn:aws:sagemaker:us-east-1:000000000000:training-job/x"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(sm.list_tags, ResourceArn=job_arn)
    code, message = error_of(refused)
    assert code == "ValidationException"
    assert message.startswith("ResourceArn: ")

    other = await served.client(team="ads")
    with pytest.raises(other.exceptions.ResourceNotFound):
        await call(other.list_tags, ResourceArn=created["PipelineArn"])
    with pytest.raises(other.exceptions.ResourceNotFound):
        await call(
            other.add_tags, ResourceArn=created["PipelineArn"], Tags=[{"Key": "a", "Value": "b"}]
        )
    too_many = [{"Key": f"k{n}", "Value": "v"} for n in range(51)]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(sm.add_tags, ResourceArn=created["PipelineArn"], Tags=too_many)
    assert error_of(refused) == (
        "ValidationException",
        "Tags: at most 50 tags on a pipeline, got 51",
    )


async def test_versions_their_executions_and_older_definitions(served: Served) -> None:
    sm = await served.client()
    v1 = definition(Parameters=[{"Name": "Threshold", "Type": "Integer", "DefaultValue": 1}])
    v2 = definition(Parameters=[{"Name": "Threshold", "Type": "Integer", "DefaultValue": 2}])
    v3 = definition(Parameters=[{"Name": "Threshold", "Type": "Integer", "DefaultValue": 0}])
    await call(
        sm.create_pipeline,
        PipelineName="v",
        PipelineDefinition=v1,
        RoleArn=ROLE,
        PipelineDescription="first",
    )
    updated = await call(
        sm.update_pipeline, PipelineName="v", PipelineDefinition=v2, PipelineDescription="second"
    )
    assert updated["PipelineVersionId"] == 2
    started = await call(sm.start_pipeline_execution, PipelineName="v", PipelineVersionId=2)
    arn = started["PipelineExecutionArn"]
    await call(sm.update_pipeline, PipelineName="v", PipelineDefinition=v3)

    execution = await call(sm.describe_pipeline_execution, PipelineExecutionArn=arn)
    assert execution["PipelineVersionId"] == 2
    summaries = (await call(sm.list_pipeline_versions, PipelineName="v"))[
        "PipelineVersionSummaries"
    ]
    assert [(s["PipelineVersionId"], s.get("PipelineVersionDescription")) for s in summaries] == [
        (3, "second"),  # an update without a description keeps the pipeline's
        (2, "second"),
        (1, "first"),
    ]
    assert [s.get("LastExecutionPipelineExecutionArn") for s in summaries] == [None, arn, None]
    oldest_first = await call(
        sm.list_pipeline_versions, PipelineName="v", SortOrder="Ascending", MaxResults=1
    )
    assert [s["PipelineVersionId"] for s in oldest_first["PipelineVersionSummaries"]] == [1]

    assert (await call(sm.describe_pipeline, PipelineName="v"))["PipelineDefinition"] == v3
    second = await call(sm.describe_pipeline, PipelineName="v", PipelineVersionId=2)
    assert second["PipelineDefinition"] == v2
    assert second["PipelineVersionDisplayName"] == "2"
    with pytest.raises(sm.exceptions.ResourceNotFound):  # no execution kept version 1
        await call(sm.describe_pipeline, PipelineName="v", PipelineVersionId=1)
    with pytest.raises(sm.exceptions.ResourceNotFound):
        await call(sm.describe_pipeline, PipelineName="v", PipelineVersionId=9)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await call(sm.start_pipeline_execution, PipelineName="v", PipelineVersionId=1)
    code, message = error_of(refused)
    assert code == "ValidationException"
    assert message.startswith("PipelineVersionId: ")


async def test_a_definition_is_read_from_the_object_store(served: Served) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=served.s3_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    await asyncio.to_thread(s3.create_bucket, Bucket="definitions")
    await asyncio.to_thread(
        s3.put_object, Bucket="definitions", Key="big/pipeline.json", Body=definition().encode()
    )
    sm = await served.client()
    await call(
        sm.create_pipeline,
        PipelineName="from-s3",
        PipelineDefinitionS3Location={"Bucket": "definitions", "ObjectKey": "big/pipeline.json"},
        RoleArn=ROLE,
    )
    described = await call(sm.describe_pipeline, PipelineName="from-s3")
    assert json.loads(described["PipelineDefinition"]) == json.loads(definition())

    changed = definition(Parameters=[{"Name": "Threshold", "Type": "Integer", "DefaultValue": 5}])
    await asyncio.to_thread(
        s3.put_object, Bucket="definitions", Key="big/pipeline.json", Body=changed.encode()
    )
    await call(
        sm.update_pipeline,
        PipelineName="from-s3",
        PipelineDefinitionS3Location={"Bucket": "definitions", "ObjectKey": "big/pipeline.json"},
    )
    assert (await call(sm.describe_pipeline, PipelineName="from-s3"))[
        "PipelineDefinition"
    ] == changed

    for location in (
        {"Bucket": "definitions", "ObjectKey": "nothing.json"},
        {"Bucket": "no-such-bucket", "ObjectKey": "pipeline.json"},
    ):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            await call(
                sm.create_pipeline,
                PipelineName="missing",
                PipelineDefinitionS3Location=location,
                RoleArn=ROLE,
            )
        code, message = error_of(refused)
        assert code == "ValidationException"
        assert message == (
            f"PipelineDefinitionS3Location: no object s3://{location['Bucket']}/"
            f"{location['ObjectKey']}"
        )
    with pytest.raises(sm.exceptions.ResourceNotFound):
        await call(sm.describe_pipeline, PipelineName="missing")


async def test_of_racing_creates_of_one_name_one_succeeds(served: Served) -> None:
    clients = [await served.client() for _ in range(6)]
    outcomes = await asyncio.gather(
        *(
            call(
                sm.create_pipeline,
                PipelineName="race",
                PipelineDefinition=definition(),
                RoleArn=ROLE,
                PipelineDescription=f"caller {n}",
            )
            for n, sm in enumerate(clients)
        ),
        return_exceptions=True,
    )
    made = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, botocore.exceptions.ClientError)]
    assert len(made) == 1, outcomes
    assert len(refused) == 5, outcomes
    assert {r.response["Error"]["Code"] for r in refused} == {"ResourceInUse"}
    assert all("already exists" in r.response["Error"]["Message"] for r in refused)
    versions = await call(clients[0].list_pipeline_versions, PipelineName="race")
    assert [v["PipelineVersionId"] for v in versions["PipelineVersionSummaries"]] == [1]
