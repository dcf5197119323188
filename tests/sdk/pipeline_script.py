"""A pipeline written with the sagemaker SDK (3.x), run against stoker's endpoint.

Run under the SDK's own virtualenv with STOKER_SAGEMAKER_URL (stoker's API), STOKER_TOKEN (a
bearer token) and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_STS (the S3-compatible server the
SDK uploads to) set. Prints one JSON object with what the SDK saw.
"""

from __future__ import annotations

import json
import os

import boto3
from sagemaker.core.training.configs import Compute, StoppingCondition
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.core.workflow.parameters import ParameterInteger
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import TrainingStep
from sagemaker.train.model_trainer import ModelTrainer

ROLE = "arn:aws:iam::000000000000:role/stoker-sdk"


def stoker_session() -> PipelineSession:
    """A session whose SageMaker client is stoker's, carrying the bearer token."""
    boto = boto3.Session(region_name="us-east-1")
    token = os.environ["STOKER_TOKEN"]

    def add_token(request: object, **_: object) -> None:
        request.headers["Authorization"] = f"Bearer {token}"  # type: ignore[attr-defined]

    boto.events.register("before-send.sagemaker", add_token)
    client = boto.client("sagemaker", endpoint_url=os.environ["STOKER_SAGEMAKER_URL"])
    return PipelineSession(boto_session=boto, sagemaker_client=client, default_bucket="sdk")


def main() -> None:
    session = stoker_session()
    threshold = ParameterInteger(name="Threshold", default_value=1)
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=ROLE,
        training_image="stoker/train-linear:local",
        compute=Compute(instance_type="ml.m5.large", instance_count=1, volume_size_in_gb=1),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=120),
        base_job_name="sdk-train",
    )
    train = TrainingStep(name="Train", step_args=trainer.train())
    gate = ConditionStep(
        name="Gate",
        conditions=[ConditionGreaterThanOrEqualTo(left=threshold, right=1)],
        if_steps=[],
        else_steps=[FailStep(name="TooLow", error_message="threshold below 1")],
    )
    # A threshold of 3 or more needs no retraining: the training step is the branch not
    # taken, so the execution ends without a job (the SDK test runs no launcher).
    check = ConditionStep(
        name="Check",
        conditions=[ConditionGreaterThanOrEqualTo(left=threshold, right=3)],
        if_steps=[],
        else_steps=[train],
    )
    check.add_depends_on([gate])
    pipeline = Pipeline(
        name="sdk-gate", parameters=[threshold], steps=[gate, check], sagemaker_session=session
    )
    created = pipeline.upsert(role_arn=ROLE)
    updated = pipeline.upsert(role_arn=ROLE, description="second upsert")
    execution = pipeline.start(parameters={"Threshold": 5})
    execution.wait(delay=1, max_attempts=30)
    print(
        json.dumps(
            {
                "created": created["PipelineArn"],
                "updated": updated["PipelineArn"],
                "described": execution.describe()["PipelineExecutionStatus"],
                "steps": {s["StepName"]: s for s in execution.list_steps()},
                "parameters": execution.list_parameters()["PipelineParameters"],
                "definition": json.loads(pipeline.describe()["PipelineDefinition"]),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
