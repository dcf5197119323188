"""Reading SageMaker pipeline definitions: what is accepted, and every refusal naming the
step and the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stoker.core.pipelines import (
    DefinitionError,
    ParameterError,
    ParameterType,
    StepType,
    bind_parameters,
    parse_definition,
)
from tests.unit.pipelines.definitions import (
    condition,
    fail,
    get,
    pipeline,
    processing,
    training,
    training_args,
)

PARAMS: list[dict[str, Any]] = [
    {"Name": "InstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
    {"Name": "Epochs", "Type": "Integer", "DefaultValue": 3},
    {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.7},
    {"Name": "Deploy", "Type": "Boolean", "DefaultValue": False},
    {"Name": "Dataset", "Type": "String"},
]


def refusal(doc: Any) -> str:
    with pytest.raises(DefinitionError) as info:
        parse_definition(doc)
    return str(info.value)


def sentiment() -> dict[str, Any]:
    """preprocess -> train -> (accuracy >= threshold ? register : fail), as the SDK writes it."""
    train_args = training_args(
        HyperParameters={"epochs": get("Parameters.Epochs")},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": get(
                            "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
                        ),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
    )
    train_args["ResourceConfig"]["InstanceType"] = get("Parameters.InstanceType")
    return pipeline(
        processing("Preprocess"),
        training(
            "Train", arguments=train_args, CacheConfig={"Enabled": True, "ExpireAfter": "P30D"}
        ),
        condition(
            "CheckAccuracy",
            [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": get("Steps.Train.FinalMetricDataList['accuracy'].Value"),
                    "RightValue": get("Parameters.Threshold"),
                }
            ],
            if_steps=[training("Register", depends_on=["Train"])],
            else_steps=[
                fail(
                    "TooWeak",
                    {
                        "Std:Join": {
                            "On": " ",
                            "Values": ["accuracy below", get("Parameters.Threshold")],
                        }
                    },
                )
            ],
        ),
        parameters=PARAMS,
    )


def test_a_definition_as_the_sdk_writes_it_is_read_with_its_dependencies() -> None:
    """Data references become dependencies, branch steps depend on their condition step, and
    the order puts every step after what it waits for."""
    definition = parse_definition(json.dumps(sentiment()))
    assert set(definition.steps) == {"Preprocess", "Train", "CheckAccuracy", "Register", "TooWeak"}
    assert definition.steps["Train"].depends_on == ("Preprocess",)
    assert definition.steps["CheckAccuracy"].depends_on == ("Train",)
    assert set(definition.steps["Register"].depends_on) == {"Train", "CheckAccuracy"}
    assert definition.steps["TooWeak"].type is StepType.FAIL
    assert definition.steps["Register"].branch is not None
    assert definition.steps["Register"].branch.outcome is True
    assert definition.steps["TooWeak"].branch is not None
    assert definition.steps["TooWeak"].branch.outcome is False
    order = definition.order
    assert order.index("Preprocess") < order.index("Train") < order.index("CheckAccuracy")
    assert order.index("CheckAccuracy") < order.index("Register")
    assert definition.parameters["Epochs"].type is ParameterType.INTEGER
    assert definition.parameters["Dataset"].required
    cache = definition.steps["Train"].cache
    assert cache is not None
    assert cache.enabled
    assert cache.expire_after is not None
    assert cache.expire_after.days == 30
    assert "IfSteps" not in definition.steps["CheckAccuracy"].arguments


def test_retry_policies_are_read_with_sagemaker_defaults() -> None:
    doc = pipeline(
        training(
            "Train",
            RetryPolicies=[
                {
                    "ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"],
                    "IntervalSeconds": 10,
                    "BackoffRate": 2.0,
                    "ExpireAfterMin": 5,
                },
                {
                    "ExceptionType": ["SageMaker.CAPACITY_ERROR"],
                    "IntervalSeconds": 60,
                    "BackoffRate": 1.5,
                    "MaxAttempts": 3,
                },
                {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"]},
            ],
        )
    )
    policies = parse_definition(doc).steps["Train"].retry_policies
    assert [p.max_attempts for p in policies] == [None, 3, 5]
    assert policies[0].expire_after is not None
    assert policies[0].expire_after.total_seconds() == 300
    assert policies[2].interval_s == 1.0
    assert policies[2].backoff_rate == 2.0


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            pipeline(training("A", depends_on=["B"]), training("B", depends_on=["A"])),
            "dependency cycle",
        ),
        (pipeline(training("A"), training("A")), "step 'A': Name: duplicate step name"),
        (
            pipeline(
                training("A"),
                condition(
                    "C", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}], [training("A")], []
                ),
            ),
            "step 'A': Name: duplicate step name",
        ),
        (
            pipeline(training("A", arguments=training_args(get("Parameters.Image")))),
            "step 'A': Arguments.AlgorithmSpecification.TrainingImage: unknown parameter 'Image'",
        ),
        (
            pipeline(
                training(
                    "A", arguments=training_args(get("Steps.Nope.ModelArtifacts.S3ModelArtifacts"))
                )
            ),
            "step 'A': Arguments.AlgorithmSpecification.TrainingImage: unknown step 'Nope'",
        ),
        (
            pipeline(training("A", arguments=training_args(get("Execution.Tomorrow")))),
            "unknown execution variable 'Tomorrow'",
        ),
        (
            pipeline(training("A", depends_on=["Ghost"])),
            "step 'A': DependsOn[0]: unknown step 'Ghost'",
        ),
        (
            pipeline({"Name": "L", "Type": "Lambda", "Arguments": {}}),
            "step 'L': Type: step type 'Lambda' is not supported",
        ),
        (pipeline(training("A", DependOn=["B"])), "step 'A': DependOn: unknown step field"),
        (
            pipeline(
                training(
                    "A",
                    RetryPolicies=[{"ExceptionType": ["Step.SERVICE_FAULT"], "MaxAttempts": 50}],
                )
            ),
            "step 'A': RetryPolicies[0]: MaxAttempts must be 1..20, got 50",
        ),
        (
            pipeline(training("A", RetryPolicies=[{"ExceptionType": ["Oops"], "MaxAttempts": 2}])),
            "step 'A': RetryPolicies[0]: ExceptionType must list some of",
        ),
        (
            pipeline(training("A", CacheConfig={"Enabled": True, "ExpireAfter": "soon"})),
            "step 'A': CacheConfig.ExpireAfter: 'soon' is not an ISO 8601 duration",
        ),
        (
            pipeline(condition("C", [{"Type": "Bigger", "LeftValue": 1, "RightValue": 2}], [], [])),
            "step 'C': Arguments.Conditions[0].Type: unknown condition type 'Bigger'",
        ),
        (
            pipeline(condition("C", [{"Type": "In", "QueryValue": 1}], [], [])),
            "step 'C': Arguments.Conditions[0]: a condition of type In needs Values",
        ),
        (
            pipeline(
                condition(
                    "C", [{"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": 1}}], [], []
                )
            ),
            "Arguments.Conditions[0].Condition: a condition of type Equals needs RightValue",
        ),
        (
            pipeline(
                training(
                    "A",
                    arguments=training_args(
                        {
                            "Std:JsonGet": {
                                "PropertyFile": get("Steps.B.PropertyFiles.x"),
                                "Path": "a",
                            }
                        }
                    ),
                )
            ),
            "Std:JsonGet (property files) is not supported yet",
        ),
        (pipeline(training("A")) | {"Version": "2021-01-01"}, "Version: must be '2020-12-01'"),
        ({"Version": "2020-12-01", "Steps": []}, "Steps: must be a non-empty list"),
        ("{not json", "not JSON"),
        (
            pipeline(
                training("A"),
                parameters=[{"Name": "N", "Type": "Integer", "DefaultValue": "three"}],
            ),
            "Parameters[0].DefaultValue: expected a value of type Integer, got 'three'",
        ),
        (
            pipeline(
                training("A"),
                parameters=[{"Name": "N", "Type": "String"}, {"Name": "N", "Type": "String"}],
            ),
            "Parameters[1].Name: duplicate parameter 'N'",
        ),
        (
            pipeline(fail("F", "x") | {"RetryPolicies": [{"ExceptionType": ["Step.THROTTLING"]}]}),
            "step 'F': RetryPolicies: a Fail step cannot be retried",
        ),
    ],
)
def test_bad_definitions_are_refused_naming_step_and_field(doc: Any, expected: str) -> None:
    assert expected in refusal(doc)


def test_a_cycle_through_a_data_reference_names_its_steps() -> None:
    doc = pipeline(
        training("A", arguments=training_args(get("Steps.B.ModelArtifacts.S3ModelArtifacts"))),
        training("B", depends_on=["A"]),
    )
    message = refusal(doc)
    assert "dependency cycle" in message
    assert "A" in message
    assert "B" in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(pipeline(training("A", depends_on=["X"]), training("B", depends_on=["Y"])))
    assert {(p.step, p.field) for p in info.value.problems} == {
        ("A", "DependsOn[0]"),
        ("B", "DependsOn[0]"),
    }


def test_parameters_are_bound_from_text_or_json_with_defaults() -> None:
    definition = parse_definition(sentiment())
    bound = bind_parameters(
        definition.parameters, {"Epochs": "5", "Dataset": "sst2", "Deploy": "true"}
    )
    assert bound == {
        "InstanceType": "ml.m5.xlarge",
        "Epochs": 5,
        "Threshold": 0.7,
        "Deploy": True,
        "Dataset": "sst2",
    }
    assert (
        bind_parameters(definition.parameters, {"Dataset": "x", "Threshold": 1})["Threshold"] == 1.0
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "Parameters.Dataset: required (String, no default)"),
        (
            {"Dataset": "x", "Epochs": "many"},
            "Parameters.Epochs: expected a value of type Integer, got 'many'",
        ),
        (
            {"Dataset": "x", "Epochs": 2.5},
            "Parameters.Epochs: expected a value of type Integer, got 2.5",
        ),
        (
            {"Dataset": "x", "Deploy": "yes"},
            "Parameters.Deploy: expected a value of type Boolean, got 'yes'",
        ),
        ({"Dataset": 7}, "Parameters.Dataset: expected a value of type String, got 7"),
        ({"Dataset": "x", "Epoch": 1}, "Parameters.Epoch: the pipeline has no such parameter"),
    ],
)
def test_wrong_parameters_are_refused_before_anything_runs(
    given: dict[str, Any], expected: str
) -> None:
    definition = parse_definition(sentiment())
    with pytest.raises(ParameterError) as info:
        bind_parameters(definition.parameters, given)
    assert expected in str(info.value)


def test_enum_values_limit_a_string_parameter() -> None:
    definition = parse_definition(
        pipeline(
            training("A"),
            parameters=[
                {
                    "Name": "Mode",
                    "Type": "String",
                    "DefaultValue": "fast",
                    "EnumValues": ["fast", "full"],
                }
            ],
        )
    )
    assert bind_parameters(definition.parameters, {"Mode": "full"}) == {"Mode": "full"}
    with pytest.raises(ParameterError, match="'slow' is not one of"):
        bind_parameters(definition.parameters, {"Mode": "slow"})


def test_a_pipeline_of_more_than_500_steps_is_refused() -> None:
    steps = [training(f"S{n}") for n in range(501)]
    assert "Steps: at most 500 steps, got 501" in refusal(pipeline(*steps))
