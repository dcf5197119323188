"""Helpers for the Lambda handler tests: the deployed template, stream records as Lambda
delivers them, the event source mappings' filters, and AWS event samples."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "template.yaml"
SAMPLES = Path(__file__).resolve().parent / "samples"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Ref x` becomes {"Ref": "x"})."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return loaded


def stream_filters(function: str) -> list[dict[str, Any]]:
    """The filter patterns of `function`'s DynamoDB Stream trigger in the template."""
    events = template()["Resources"][function]["Properties"]["Events"]
    patterns = [
        json.loads(item["Pattern"])
        for event in events.values()
        if event["Type"] == "DynamoDB"
        for item in event["Properties"]["FilterCriteria"]["Filters"]
    ]
    assert patterns, f"{function} has no filtered DynamoDB trigger"
    return patterns


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's event filtering, for the equality patterns the template uses."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and matches(sub, value[key]) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return value in pattern
    raise AssertionError(f"unsupported filter pattern {pattern!r}")


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record read with GetRecords, in the JSON Lambda hands a function: binary values in
    base64, the creation time in epoch seconds, the stream's ARN added."""
    change = dict(raw["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    for image in ("NewImage", "OldImage", "Keys"):
        if image in change:
            change[image] = {name: _wire(value) for name, value in change[image].items()}
    return {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": raw["eventSource"],
        "awsRegion": raw["awsRegion"],
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


def _wire(value: Mapping[str, Any]) -> dict[str, Any]:
    if "B" in value and isinstance(value["B"], bytes | bytearray):
        return {"B": base64.b64encode(bytes(value["B"])).decode("ascii")}
    return dict(value)


@dataclass
class StreamReader:
    """Reads the job table's stream on DynamoDB Local with the low-level API, as the event
    source mapping does, and hands out each record once."""

    streams: Any
    stream_arn: str
    _after: dict[str, str] = field(default_factory=dict)

    def new_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in shards["Shards"]:
            shard_id = shard["ShardId"]
            request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
            if shard_id in self._after:
                request |= {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": self._after[shard_id],
                }
            else:
                request["ShardIteratorType"] = "TRIM_HORIZON"
            iterator = self.streams.get_shard_iterator(**request).get("ShardIterator")
            while iterator:
                answer = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                if not answer["Records"]:
                    break
                for raw in answer["Records"]:
                    self._after[shard_id] = raw["dynamodb"]["SequenceNumber"]
                    records.append(lambda_record(raw, self.stream_arn))
                iterator = answer.get("NextShardIterator")
        return records

    def batch_for(self, function: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The event `function`'s trigger would deliver: the records its filters let by."""
        patterns = stream_filters(function)
        kept = [r for r in records if any(matches(p, r) for p in patterns)]
        return {"Records": kept}


def state_change(name: str, status: str, job_id: str | None = None) -> dict[str, Any]:
    """EventBridge's "SageMaker Training Job State Change" sample, for one training job."""
    sample = json.loads((SAMPLES / "sagemaker-training-job-state-change.json").read_text())
    event = copy.deepcopy(sample)
    event["detail"]["TrainingJobName"] = name
    event["detail"]["TrainingJobStatus"] = status
    event["detail"]["Tags"] = {"stoker:job-id": job_id} if job_id else {}
    return event


def scheduled() -> dict[str, Any]:
    """EventBridge's "Scheduled Event" sample."""
    loaded: dict[str, Any] = json.loads((SAMPLES / "scheduled-event.json").read_text())
    return loaded


def http_event(
    route_key: str,
    *,
    body: Any = None,
    job_id: str | None = None,
    query: Mapping[str, str] | None = None,
    claims: Mapping[str, str] | None = None,
    user_arn: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API request (payload format 2.0) as Lambda receives it."""
    method, path = route_key.split(" ", 1)
    raw_path = path.replace("{job_id}", job_id or "")
    authorizer: dict[str, Any] = {}
    if claims is not None:
        authorizer["jwt"] = {"claims": dict(claims), "scopes": None}
    if user_arn is not None:
        authorizer["iam"] = {
            "accessKey": "ASIAEXAMPLE",
            "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:session",
            "principalOrgId": None,
            "userArn": user_arn,
            "userId": "AROAEXAMPLE:session",
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "authorizer": authorizer,
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1"},
            "routeKey": route_key,
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if job_id is not None:
        event["pathParameters"] = {"job_id": job_id}
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def answer(response: Mapping[str, Any]) -> tuple[int, Any]:
    """(status code, decoded JSON body) of a handler's HTTP answer."""
    return int(response["statusCode"]), json.loads(response["body"])


def training_request(job_id: str) -> dict[str, Any]:
    """A complete CreateTrainingJob request body for a job spec."""
    return {
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "OutputDataConfig": {"S3OutputPath": f"s3://stoker-models/{job_id}/"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 1,
            "VolumeSizeInGB": 10,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
