"""A notebook step feeding a processing step, written with the sagemaker SDK (3.x) and run
against a running stoker through the SDK's own verbs.

Run under the SDK's virtualenv with STOKER_SAGEMAKER_URL, STOKER_TOKEN, AWS_ENDPOINT_URL_S3
(the S3-compatible server both the SDK and stoker use), NOTEBOOK (the notebook to run),
SPLIT_SCRIPT (the processing script, a path on stoker's machine) and PIPELINE (its name)
set. Prints one JSON object with what the SDK saw.
"""

from __future__ import annotations

import json
import os

from pipeline_script import ROLE, stoker_session
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import (
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
)
from sagemaker.core.workflow.conditions import ConditionEquals
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join
from sagemaker.core.workflow.parameters import ParameterInteger
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.notebook_job_step import NotebookJobStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep

S3_ROOT = "s3://sdk/notebook-jobs"
# NotebookJobStep wants an image of the session's region; the local backend runs the
# notebook with papermill in place of the image's scheduler.
IMAGE = "885854791233.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution-prod"
INPUT = "/opt/ml/processing/input/data"
OUTPUT = "/opt/ml/processing/output/split"


def build(name: str) -> Pipeline:
    session = stoker_session()
    rows = ParameterInteger(name="Rows", default_value=2)
    prepare = NotebookJobStep(
        name="Prepare",
        notebook_job_name="prepare-usage",
        input_notebook=os.environ["NOTEBOOK"],
        image_uri=IMAGE,
        kernel_name="python3",
        role=ROLE,
        s3_root_uri=S3_ROOT,
        instance_type="ml.m5.large",
        parameters={"rows": rows},
        max_runtime_in_seconds=600,
    )
    processor = Processor(
        role=ROLE,
        image_uri="stoker-local",
        instance_count=1,
        instance_type="ml.m5.large",
        entrypoint=["python", os.environ["SPLIT_SCRIPT"]],
        volume_size_in_gb=1,
        max_runtime_in_seconds=600,
        sagemaker_session=session,
    )
    split_output = Join(
        on="/",
        values=[
            S3_ROOT,
            ExecutionVariables.PIPELINE_NAME,
            ExecutionVariables.PIPELINE_EXECUTION_ID,
            "Split",
        ],
    )
    split = ProcessingStep(
        name="Split",
        step_args=processor.run(
            inputs=[
                ProcessingInput(
                    input_name="data",
                    s3_input=ProcessingS3Input(
                        # Where the notebook step wrote: its output prefix, data/ below it.
                        s3_uri=Join(
                            on="/",
                            values=[prepare.properties.NotebookJobOutputLocationPrefix, "data"],
                        ),
                        local_path=INPUT,
                        s3_data_type="S3Prefix",
                        s3_input_mode="File",
                    ),
                )
            ],
            outputs=[
                ProcessingOutput(
                    output_name="split",
                    s3_output=ProcessingS3Output(
                        s3_uri=split_output, local_path=OUTPUT, s3_upload_mode="EndOfJob"
                    ),
                )
            ],
            arguments=["--input", INPUT, "--output", OUTPUT, "--key", "customer_id"],
        ),
    )
    split.add_depends_on([prepare])
    check = ConditionStep(
        name="Check",
        conditions=[ConditionEquals(left=split.properties.ProcessingJobStatus, right="Completed")],
        if_steps=[],
        else_steps=[FailStep(name="NotSplit", error_message="the split did not complete")],
    )
    return Pipeline(
        name=name, parameters=[rows], steps=[prepare, split, check], sagemaker_session=session
    )


def main() -> None:
    pipeline = build(os.environ["PIPELINE"])
    created = pipeline.upsert(role_arn=ROLE, tags=[{"Key": "team", "Value": "usage"}])
    updated = pipeline.upsert(role_arn=ROLE, tags=[{"Key": "stage", "Value": "dev"}])
    client = pipeline.sagemaker_session.sagemaker_client
    execution = pipeline.start(parameters={"Rows": 3})
    execution.wait(delay=1, max_attempts=110)
    print(
        json.dumps(
            {
                "created": created["PipelineArn"],
                "updated_version": updated.get("PipelineVersionId"),
                "tags": client.list_tags(ResourceArn=created["PipelineArn"])["Tags"],
                "versions": [
                    v["PipelineVersionId"]
                    for v in client.list_pipeline_versions(PipelineName=pipeline.name)[
                        "PipelineVersionSummaries"
                    ]
                ],
                "execution": execution.describe(),
                "steps": {s["StepName"]: s for s in execution.list_steps()},
                "definition": json.loads(pipeline.describe()["PipelineDefinition"]),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
