"""What `Get Steps.<step>...` reads of a job step that ended well, in the shape of the job's
Describe response: DescribeTrainingJob for a Training step, DescribeProcessingJob for a
Processing step.

The lifecycle reports an ended job in training terms (`TrainingJobName`,
`TrainingJobStatus`, `ModelArtifacts`) whatever its kind (ADR 0025); a Processing step's
properties rename those and echo the request's own members, as DescribeProcessingJob does,
so `Steps.Split.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri` reads the output
the step was asked to write. Pure.
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
_TRAINING_ONLY = frozenset(
    {"TrainingJobName", "TrainingJobStatus", "ModelArtifacts", "BillableTimeInSeconds"}
)


def job_step_properties(
    step_type: StepType, arguments: Mapping[str, Any] | None, reported: Mapping[str, Any]
) -> dict[str, Any]:
    """The properties of a job step from its resolved `arguments` and what its job's end
    `reported`; a Training step's are the report as it is."""
    if step_type is not StepType.PROCESSING:
        return dict(reported)
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
