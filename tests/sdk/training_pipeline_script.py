"""A `TrainingStep` whose `ModelTrainer` runs stoker's shipped `train_linear` script, then a
`ConditionStep` on the training job's properties, written with the sagemaker SDK (3.x) and
run against a running stoker through the SDK's own verbs.

The trainer's `SourceCode.command` is what the local backend runs (checked against the
policy's `local.entrypoints`: `python -m stoker.training_scripts.train_linear` is allowed by
default); the SDK's own shell driver is not run. Run under the SDK's virtualenv with
STOKER_SAGEMAKER_URL, STOKER_TOKEN, AWS_ENDPOINT_URL_S3 and PIPELINE set. Prints one JSON
object with what the SDK saw.
"""

from __future__ import annotations

import json
import os

from pipeline_script import ROLE, stoker_session
from sagemaker.core.training.configs import Compute, SourceCode, StoppingCondition
from sagemaker.core.workflow.conditions import ConditionEquals
from sagemaker.core.workflow.parameters import ParameterInteger
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import TrainingStep
from sagemaker.train.model_trainer import ModelTrainer


def build(name: str) -> Pipeline:
    session = stoker_session()
    epochs = ParameterInteger(name="Epochs", default_value=5)
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=ROLE,
        # Any image name: the local backend runs SourceCode.command on stoker's machine.
        training_image="stoker/train-linear:local",
        source_code=SourceCode(command="python -m stoker.training_scripts.train_linear"),
        hyperparameters={"epochs": epochs, "seed": 3},
        compute=Compute(instance_type="ml.m5.large", instance_count=1, volume_size_in_gb=1),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=300),
        base_job_name="sdk-linear",
    )
    train = TrainingStep(name="Train", step_args=trainer.train())
    check = ConditionStep(
        name="Check",
        conditions=[ConditionEquals(left=train.properties.TrainingJobStatus, right="Completed")],
        if_steps=[],
        else_steps=[FailStep(name="NotTrained", error_message="the training job failed")],
    )
    return Pipeline(name=name, parameters=[epochs], steps=[train, check], sagemaker_session=session)


def main() -> None:
    pipeline = build(os.environ["PIPELINE"])
    pipeline.upsert(role_arn=ROLE)
    execution = pipeline.start(parameters={"Epochs": 20})
    execution.wait(delay=1, max_attempts=110)
    print(
        json.dumps(
            {
                "execution": execution.describe(),
                "steps": {s["StepName"]: s for s in execution.list_steps()},
                "definition": json.loads(pipeline.describe()["PipelineDefinition"]),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
