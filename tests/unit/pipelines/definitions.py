"""Pipeline definitions in the shapes the sagemaker SDK's `Pipeline(...).definition()` writes
(checked against sagemaker-mlops' workflow code: steps.py, condition_step.py, retry.py and
sagemaker-core's conditions.py, parameters.py, functions.py)."""

from __future__ import annotations

from typing import Any

ROLE = "arn:aws:iam::123456789012:role/sagemaker"


def training_args(
    image: Any = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1", **extra: Any
) -> dict[str, Any]:
    """A CreateTrainingJob request as a TrainingStep's Arguments (no TrainingJobName: the
    pipeline names the job)."""
    return {
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "ResourceConfig": {
            "VolumeSizeInGB": 30,
            "InstanceCount": 1,
            "InstanceType": "ml.m5.xlarge",
        },
        "RoleArn": ROLE,
        **extra,
    }


def training(name: str, *, depends_on: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "Name": name,
        "Type": "Training",
        "Arguments": fields.pop("arguments", training_args()),
    }
    if depends_on:
        step["DependsOn"] = depends_on
    step.update(fields)
    return step


def processing(name: str, *, depends_on: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    args = fields.pop(
        "arguments",
        {
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceType": "ml.m5.xlarge",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                }
            },
            "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/proc:1"},
            "RoleArn": ROLE,
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "train",
                        "AppManaged": False,
                        "S3Output": {
                            "S3Uri": "s3://bucket/train",
                            "LocalPath": "/opt/ml/processing/train",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        },
    )
    step: dict[str, Any] = {"Name": name, "Type": "Processing", "Arguments": args}
    if depends_on:
        step["DependsOn"] = depends_on
    step.update(fields)
    return step


def condition(
    name: str,
    conditions: list[dict[str, Any]],
    if_steps: list[dict[str, Any]],
    else_steps: list[dict[str, Any]],
    depends_on: list[str] | None = None,
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "Name": name,
        "Type": "Condition",
        "Arguments": {"Conditions": conditions, "IfSteps": if_steps, "ElseSteps": else_steps},
    }
    if depends_on:
        step["DependsOn"] = depends_on
    return step


def fail(name: str, message: Any) -> dict[str, Any]:
    return {"Name": name, "Type": "Fail", "Arguments": {"ErrorMessage": message}}


def pipeline(
    *steps: dict[str, Any], parameters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": parameters or [],
        "PipelineExperimentConfig": {
            "ExperimentName": {"Get": "Execution.PipelineName"},
            "TrialName": {"Get": "Execution.PipelineExecutionId"},
        },
        "Steps": list(steps),
    }


def get(path: str) -> dict[str, str]:
    return {"Get": path}
