"""The sentiment pipeline of examples/sentiment-pipeline, written with the sagemaker SDK (3.x).

preprocess -> train -> batch inference, three `NotebookJobStep`s chained by their outputs.
Run it with the SDK installed (`pip install -r tests/sdk/requirements.txt` in a virtualenv
of its own) against stoker's SageMaker API:

    STOKER_SAGEMAKER_URL=http://127.0.0.1:8080 STOKER_TOKEN=... \\
    AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 python examples/sentiment-pipeline/pipeline.py \\
        Rows=200 Epochs=100 BatchRows=40

(parameters as `Name=value`, the defaults otherwise) or, without STOKER_SAGEMAKER_URL,
against SageMaker itself (ROLE_ARN and S3_ROOT set). Each notebook gets its upstream step's
output as an `s3://` URI and downloads it (`s3_inputs.py`), as on SageMaker; on one machine
stoker's policy must let local jobs reach the S3 server (`local: {s3: {endpoint_url: ...}}`,
docs/pipelines.md). `stoker pipelines demo` runs the same steps from pipeline.json, the
definition written for local folders, with no SDK and no S3.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.mlops.workflow.notebook_job_step import NotebookJobStep
from sagemaker.mlops.workflow.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
NAME = os.environ.get("PIPELINE_NAME", "sentiment")
IMAGE = os.environ.get(
    # Any image in the session's region; on AWS, SageMaker Distribution's for that region.
    "NOTEBOOK_IMAGE",
    "885854791233.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution-prod",
)
ROLE = os.environ.get("ROLE_ARN", "arn:aws:iam::000000000000:role/stoker-local")
S3_ROOT = os.environ.get("S3_ROOT", "s3://sdk/notebook-jobs")


def session() -> PipelineSession:
    """SageMaker's client, or stoker's with its bearer token when STOKER_SAGEMAKER_URL is set."""
    boto = boto3.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
    url = os.environ.get("STOKER_SAGEMAKER_URL")
    if url is None:
        return PipelineSession(boto_session=boto)
    token = os.environ["STOKER_TOKEN"]

    def add_token(request: object, **_: object) -> None:
        request.headers["Authorization"] = f"Bearer {token}"  # type: ignore[attr-defined]

    boto.events.register("before-send.sagemaker", add_token)
    client = boto.client("sagemaker", endpoint_url=url)
    return PipelineSession(boto_session=boto, sagemaker_client=client, default_bucket="sdk")


def output_of(step: str, *rest: str) -> Join:
    """Where NotebookJobStep puts a step's outputs: <s3_root_uri>/<pipeline>/<execution>/<step>."""
    return Join(
        on="/",
        values=[
            S3_ROOT,
            ExecutionVariables.PIPELINE_NAME,
            ExecutionVariables.PIPELINE_EXECUTION_ID,
            step,
            *rest,
        ],
    )


def build(sagemaker_session: PipelineSession) -> Pipeline:
    rows = ParameterInteger(name="Rows", default_value=500)
    epochs = ParameterInteger(name="Epochs", default_value=200)
    min_accuracy = ParameterFloat(name="MinAccuracy", default_value=0.75)
    batch_rows = ParameterInteger(name="BatchRows", default_value=300)
    common = {
        "image_uri": IMAGE,
        "kernel_name": "python3",
        "role": ROLE,
        "s3_root_uri": S3_ROOT,
        "instance_type": "ml.m5.large",
        "max_runtime_in_seconds": 3600,
    }
    preprocess = NotebookJobStep(
        name="Preprocess",
        notebook_job_name="sentiment-preprocess",
        input_notebook=str(HERE / "preprocess.ipynb"),
        additional_dependencies=[str(HERE / "sentences.py")],
        parameters={"rows": rows},
        **common,
    )
    train = NotebookJobStep(
        name="Train",
        notebook_job_name="sentiment-train",
        input_notebook=str(HERE / "train.ipynb"),
        additional_dependencies=[
            str(HERE / "prepare-test-set.ipynb"),
            str(HERE / "sentences.py"),
            str(HERE / "s3_inputs.py"),
        ],
        parameters={
            "train_data": output_of("Preprocess", "data/train.csv"),
            "epochs": epochs,
            "min_accuracy": min_accuracy,
        },
        **common,
    )
    batch = NotebookJobStep(
        name="BatchInference",
        notebook_job_name="sentiment-batch-inference",
        input_notebook=str(HERE / "batch-inference.ipynb"),
        additional_dependencies=[str(HERE / "sentences.py"), str(HERE / "s3_inputs.py")],
        parameters={"model_dir": output_of("Train", "model"), "rows": batch_rows},
        **common,
    )
    train.add_depends_on([preprocess])
    batch.add_depends_on([train])
    return Pipeline(
        name=NAME,
        parameters=[rows, epochs, min_accuracy, batch_rows],
        steps=[preprocess, train, batch],
        sagemaker_session=sagemaker_session,
    )


def main(arguments: list[str]) -> int:
    """Upserts and runs the pipeline with the `Name=value` parameters given; prints each
    step's status, then the execution's ARN and status. Exit code 0 when it succeeded."""
    parameters = dict(argument.split("=", 1) for argument in arguments)
    pipeline = build(session())
    pipeline.upsert(role_arn=ROLE)
    execution = pipeline.start(parameters=parameters)
    try:
        execution.wait(delay=2, max_attempts=900)
    except Exception as exc:  # the SDK's waiter raises when the execution did not succeed
        print(f"wait ended: {exc}", file=sys.stderr)
    for step in execution.list_steps():
        print(step["StepName"], step["StepStatus"], step.get("FailureReason", ""))
    described = execution.describe()
    status = described["PipelineExecutionStatus"]
    print("execution", described["PipelineExecutionArn"], status)
    return 0 if status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
