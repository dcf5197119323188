"""Notebook jobs: a notebook run headless as a training job, as SageMaker runs them.

The sagemaker SDK's `NotebookJobStep` compiles a notebook job into one `CreateTrainingJob`
request: SageMaker's notebook scheduler (`amazon_sagemaker_scheduler`, inside the SageMaker
Distribution images) as the entrypoint, one input channel holding the notebook, its
initialization script and its additional dependencies side by side, the parameters as
HyperParameters and the notebook's names and kernel in `SM_*` environment variables.
`compile_notebook_job` makes the same request from a `NotebookJob`, so a notebook job runs
on SageMaker as the SDK's would, and a request the SDK compiled runs on stoker unchanged.

On the local backend that entrypoint is not installed: `local_entrypoint` puts stoker's own
notebook runner (`stoker/training_scripts/run_notebook.py`, papermill) in its place, when
the policy's `local.notebooks` allows notebook jobs at all. Pure.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEDULER_ENTRYPOINT = ("amazon_sagemaker_scheduler",)
"""The entrypoint the SDK's NotebookJobStep gives every notebook job."""
INPUT_CHANNEL = "sagemaker_headless_execution_pipelinestep"
"""The one input channel of a notebook job: the notebook and everything shipped with it."""
EXECUTION_INPUT_PATH = f"/opt/ml/input/data/{INPUT_CHANNEL}"

# The environment variables the notebook scheduler reads (named as in the SDK).
ENV_KERNEL = "SM_KERNEL_NAME"
ENV_INPUT_NOTEBOOK = "SM_INPUT_NOTEBOOK_NAME"
ENV_OUTPUT_NOTEBOOK = "SM_OUTPUT_NOTEBOOK_NAME"
ENV_INIT_SCRIPT = "SM_INIT_SCRIPT"
ENV_INPUT_PATH = "SM_EXECUTION_INPUT_PATH"

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]*$")


class NotebookJob(BaseModel):
    """What `NotebookJobStep` takes, by the SDK's argument names. Paths are the local files
    the SDK uploads; here they only give the names the job sees (the files themselves are
    staged into `input_uri` by whoever compiles the job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_notebook: str = Field(min_length=1, description="the notebook to run (.ipynb)")
    image_uri: str = Field(min_length=1)
    kernel_name: str = Field(min_length=1, description="e.g. python3")
    role: str = Field(min_length=1, description="the IAM role ARN of the training job")
    notebook_job_name: str | None = Field(
        default=None,
        description="the training job's name prefix; default: from the notebook's file name",
    )
    parameters: dict[str, str] = Field(default_factory=dict)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    initialization_script: str | None = None
    instance_type: str = "ml.m5.large"
    volume_size: int = Field(default=30, ge=1)
    volume_kms_key: str | None = None
    s3_kms_key: str | None = None
    encrypt_inter_container_traffic: bool = True
    security_group_ids: list[str] | None = None
    subnets: list[str] | None = None
    max_retry_attempts: int = Field(default=1, ge=1, le=30)
    max_runtime_in_seconds: int = Field(default=2 * 24 * 60 * 60, ge=1)
    tags: list[dict[str, str]] = Field(default_factory=list)
    additional_dependencies: list[str] = Field(default_factory=list)

    def job_name(self) -> str:
        """The SDK's training job name (prefix) for this notebook job."""
        return job_name_prefix(self.notebook_job_name or posixpath.basename(self.input_notebook))


def job_name_prefix(notebook_job_name: str) -> str:
    """As the SDK derives the training job's name from the notebook job's: leading
    characters that are not letters or digits dropped, other special characters as '-'."""
    name = re.sub(r"^[^a-zA-Z0-9]+", "", notebook_job_name)
    return re.sub(r"[^a-zA-Z0-9-]", "-", name)


def name_problems(job: NotebookJob) -> dict[str, str]:
    """What the SDK would refuse about the notebook job's name, by field."""
    name = job.notebook_job_name
    if name is not None and not _NAME.match(name):
        return {
            "notebook_job_name": "must start with a letter and hold only letters, digits, "
            f"hyphens and underscores (got {name!r})"
        }
    return {}


def compile_notebook_job(
    job: NotebookJob, *, input_uri: str, output_uri: str, region: str
) -> dict[str, Any]:
    """The CreateTrainingJob request the SDK's NotebookJobStep makes for `job`, whose files
    were staged under `input_uri`, writing its outputs under `output_uri`."""
    prefix = job.job_name()
    request: dict[str, Any] = {
        "TrainingJobName": prefix,
        "RoleArn": job.role,
        "RetryStrategy": {"MaximumRetryAttempts": job.max_retry_attempts},
        "StoppingCondition": {"MaxRuntimeInSeconds": job.max_runtime_in_seconds},
        "EnableInterContainerTrafficEncryption": job.encrypt_inter_container_traffic,
        "AlgorithmSpecification": {
            "TrainingImage": job.image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": list(SCHEDULER_ENTRYPOINT),
        },
        "InputDataConfig": [
            {
                "ChannelName": INPUT_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": input_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
    }
    output: dict[str, Any] = {"S3OutputPath": output_uri}
    if job.s3_kms_key is not None:
        output["KmsKeyId"] = job.s3_kms_key
    request["OutputDataConfig"] = output
    resources: dict[str, Any] = {
        "VolumeSizeInGB": job.volume_size,
        "InstanceCount": 1,
        "InstanceType": job.instance_type,
    }
    if job.volume_kms_key is not None:
        resources["VolumeKmsKeyId"] = job.volume_kms_key
    request["ResourceConfig"] = resources
    if job.subnets and job.security_group_ids:
        request["VpcConfig"] = {"Subnets": job.subnets, "SecurityGroupIds": job.security_group_ids}
    request["Tags"] = [
        *job.tags,
        {"Key": "sagemaker:name", "Value": job.notebook_job_name or prefix},
        {"Key": "sagemaker:notebook-name", "Value": posixpath.basename(job.input_notebook)},
        {"Key": "sagemaker:notebook-job-origin", "Value": "PIPELINE_STEP"},
        {"Key": "sagemaker:is-studio-archived", "Value": "false"},
    ]
    environment = dict(job.environment_variables)
    environment.update(
        {
            "AWS_DEFAULT_REGION": region,
            "SM_JOB_DEF_VERSION": "1.0",
            "SM_ENV_NAME": "sagemaker-default-env",
            "SM_SKIP_EFS_SIMULATION": "true",
            ENV_INPUT_PATH: EXECUTION_INPUT_PATH,
            ENV_KERNEL: job.kernel_name,
            ENV_INPUT_NOTEBOOK: posixpath.basename(job.input_notebook),
            ENV_OUTPUT_NOTEBOOK: f"{prefix}.ipynb",
        }
    )
    if job.initialization_script:
        environment[ENV_INIT_SCRIPT] = posixpath.basename(job.initialization_script)
    request["Environment"] = environment
    if job.parameters:
        request["HyperParameters"] = dict(job.parameters)
    return request


def is_notebook_job(request: Mapping[str, Any]) -> bool:
    """Whether a CreateTrainingJob request runs a notebook (its entrypoint is the scheduler)."""
    algorithm = request.get("AlgorithmSpecification")
    if not isinstance(algorithm, Mapping):
        return False
    entrypoint = algorithm.get("ContainerEntrypoint")
    return isinstance(entrypoint, list) and tuple(entrypoint[:1]) == SCHEDULER_ENTRYPOINT


def local_entrypoint(command: Sequence[str], runner: Sequence[str]) -> list[str]:
    """The command a local process runs for `command`: stoker's notebook runner (`runner`) in
    place of SageMaker's notebook scheduler, anything else as it is."""
    if tuple(command[:1]) == SCHEDULER_ENTRYPOINT:
        return [*runner, *command[1:]]
    return list(command)
