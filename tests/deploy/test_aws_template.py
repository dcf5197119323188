"""The SAM template agrees with the code it deploys: tables as the store, bus and ledger
create them, handlers that exist, settings that exist, a dead-letter queue behind every
asynchronous trigger, and IAM without wildcards beyond the one API that needs one."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from stoker.adapters.notifier import ledger_dynamodb
from stoker.adapters.store import layout
from stoker.adapters.store import pipeline_layout as pl
from stoker.app.aws_lambda.host import LambdaSettings
from stoker.core import topics
from stoker.notifier.config import NotifySettings
from stoker.notifier.service import TERMINAL_TOPICS
from stoker.pipelines.worker import OUTCOME_TOPICS
from stoker.settings import Settings
from tests.deploy.support import stream_filters, template

FUNCTIONS = (
    "SubmitFunction",
    "LaunchFunction",
    "MonitorFunction",
    "ReactFunction",
    "PipelinesFunction",
)


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    found: dict[str, Any] = template()["Resources"]
    return found


def properties(resources: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = resources[name]["Properties"]
    return found


def test_the_job_table_is_the_one_the_store_creates(resources: dict[str, Any]) -> None:
    table = properties(resources, "JobTable")
    assert table["TableName"] == {"Fn::Sub": layout.job_table_name("${Prefix}")}
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["GlobalSecondaryIndexes"] == layout.JOB_TABLE_INDEXES
    declared = {a["AttributeName"] for a in table["AttributeDefinitions"]}
    keyed = {"pk", "sk"} | {
        key["AttributeName"] for index in layout.JOB_TABLE_INDEXES for key in index["KeySchema"]
    }
    assert declared == keyed
    checkpoints = properties(resources, "CheckpointTable")
    assert checkpoints["TableName"] == {"Fn::Sub": layout.checkpoint_table_name("${Prefix}")}


def test_the_pipeline_table_is_the_one_the_pipeline_store_creates(
    resources: dict[str, Any],
) -> None:
    table = properties(resources, "PipelineTable")
    assert table["TableName"] == {"Fn::Sub": pl.pipeline_table_name("${Prefix}")}
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["GlobalSecondaryIndexes"] == pl.PIPELINE_TABLE_INDEXES
    declared = {a["AttributeName"] for a in table["AttributeDefinitions"]}
    assert declared == set(pl.PIPELINE_TABLE_KEYS)
    # The store opens the table with DescribeTable and never creates it here.
    policy = properties(resources, "PipelineTablePolicy")["PolicyDocument"]
    (statement,) = policy["Statement"]
    assert "dynamodb:CreateTable" not in statement["Action"]
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["PipelineTable", "Arn"]},
        {"Fn::Sub": "${PipelineTable.Arn}/index/*"},
    ]
    for role in ("ReactRole", "PipelinesRole"):
        assert {"Ref": "PipelineTablePolicy"} in properties(resources, role)["ManagedPolicyArns"]


def test_the_ledger_table_is_the_one_the_notifier_uses(resources: dict[str, Any]) -> None:
    table = properties(resources, "LedgerTable")
    assert table["TableName"] == {"Fn::Sub": "${Prefix}-notifications"}
    assert table["KeySchema"] == [{"AttributeName": "entry_id", "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == ledger_dynamodb.INDEX
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["pending_shard", "pending_order"]


def test_every_handler_exists(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        (path,) = properties(resources, name)["ImageConfig"]["Command"]
        module, _, attribute = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), path


def test_every_setting_the_template_sets_exists() -> None:
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    known = (
        {f"STOKER_{name.upper()}" for name in Settings.model_fields}
        | {f"STOKER_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields}
        | {f"STOKER_LAMBDA_{name.upper()}" for name in LambdaSettings.model_fields}
    )
    assert set(variables) - known == set()
    assert variables["STOKER_MODE"] == "dynamodb"


def test_every_asynchronous_trigger_has_a_dead_letter_queue(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS[1:]:
        function = properties(resources, name)
        on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure["Type"] == "SQS", name
        for event_name, event in function["Events"].items():
            where = f"{name}.{event_name}"
            if event["Type"] == "DynamoDB":
                config = event["Properties"]["DestinationConfig"]["OnFailure"]
                assert "Destination" in config, where
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            else:
                assert event["Type"] in {"Schedule", "EventBridgeRule"}, where
                assert "Arn" in event["Properties"]["DeadLetterConfig"], where


def test_the_stream_readers_take_the_topics_their_roles_consume() -> None:
    def topics_of(function: str) -> set[str]:
        (pattern,) = stream_filters(function)
        assert pattern["eventName"] == ["INSERT"]
        image = pattern["dynamodb"]["NewImage"]
        assert image["kind"] == {"S": [layout.KIND_EVENT]}
        return set(image["topic"]["S"])

    assert topics_of("LaunchFunction") == {topics.LIFECYCLE}
    assert topics_of("ReactFunction") == {topics.LIFECYCLE, *TERMINAL_TOPICS}
    # The pipelines service's step ends ride on the react function's reading.
    assert set(OUTCOME_TOPICS) <= topics_of("ReactFunction")


def statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(props["PolicyDocument"])
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy"}:
            found += [(name, s) for doc in documents for s in doc["Statement"]]
    return found


def test_iam_is_least_privilege(resources: dict[str, Any]) -> None:
    """No wildcard actions; a wildcard resource only for ListTrainingJobs and
    ListProcessingJobs (a list action has no resource scope); PassRole only for the
    configured training roles, only to SageMaker, only by the launcher."""
    found = statements(resources)
    assert found
    for role, statement in found:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), (role, actions)
        if statement.get("Resource") == "*":
            listings = {"sagemaker:ListTrainingJobs", "sagemaker:ListProcessingJobs"}
            assert set(actions) <= listings, (role, actions)
    passing = [(role, s) for role, s in found if "iam:PassRole" in str(s["Action"])]
    assert [role for role, _ in passing] == ["LaunchRole"]
    ((_, statement),) = passing
    assert statement["Resource"] == {"Ref": "TrainingRoleArns"}
    assert statement["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_every_route_needs_iam_or_a_jwt(resources: dict[str, Any]) -> None:
    routes = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"
    ]
    assert {r["RouteKey"] for r in routes} == {
        "POST /v1/jobs",
        "GET /v1/jobs",
        "GET /v1/jobs/{job_id}",
        "GET /v1/jobs/{job_id}/history",
        "POST /v1/jobs/{job_id}/stop",
    }
    for route in routes:
        assert route["AuthorizationType"] == {"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}
