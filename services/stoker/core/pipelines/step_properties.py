"""What `Get Steps.<step>...` reads of a job step that ended well, in the shape of the job's
Describe response: DescribeTrainingJob for a Training step, DescribeProcessingJob for a
Processing step.

The lifecycle reports an ended job in training terms (`TrainingJobName`,
`TrainingJobStatus`, `ModelArtifacts`) whatever its kind (ADR 0025). Both Describe
responses echo the request's own members, and so do the properties: a Processing step's
(with the report's names changed to processing ones), so
`Steps.Split.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri` reads the output the
step was asked to write, and a Training step's, so the SDK's `NotebookJobStep` properties
(`NotebookJobOutputLocationPrefix` is `OutputDataConfig.S3OutputPath`,
`OutputNotebookName` is `Environment['SM_OUTPUT_NOTEBOOK_NAME']`) read where the notebook
wrote. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stoker.core.pipelines.definition import StepType

_PROCESSING_ECHOED = (
    "ProcessingInputs",
    "ProcessingOutputConfig",
    "ProcessingResources",
    "StoppingCondition",
    "AppSpecification",
    "Environment",
    "NetworkConfig",
    "RoleArn",
)
_TRAINING_ECHOED = (
    "AlgorithmSpecification",
    "HyperParameters",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "Environment",
    "VpcConfig",
    "RetryStrategy",
    "CheckpointConfig",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
)
_TRAINING_ONLY = frozenset(
    {"TrainingJobName", "TrainingJobStatus", "ModelArtifacts", "BillableTimeInSeconds"}
)


def job_step_properties(
    step_type: StepType, arguments: Mapping[str, Any] | None, reported: Mapping[str, Any]
) -> dict[str, Any]:
    """The properties of a job step from its resolved `arguments` and what its job's end
    `reported` (which wins over the request's members)."""
    if step_type is not StepType.PROCESSING:
        echoed = {key: arguments[key] for key in _TRAINING_ECHOED if arguments and key in arguments}
        return {**echoed, **reported}
    properties: dict[str, Any] = {
        key: arguments[key] for key in _PROCESSING_ECHOED if arguments and key in arguments
    }
    # What the job reported wins over the request, but not its training-only members.
    properties.update((k, v) for k, v in reported.items() if k not in _TRAINING_ONLY)
    properties["ProcessingJobStatus"] = "Completed"
    name = reported.get("ProcessingJobName", reported.get("TrainingJobName"))
    if name is not None:
        properties["ProcessingJobName"] = name
    return properties
