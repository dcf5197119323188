"""The kinds of backend job a stoker job runs: a training job or a processing job.

A job spec carries its kind (`training`, the default, or `processing`) and the SageMaker
request of that kind: `training` (CreateTrainingJob) or `processing` (CreateProcessingJob).
The lifecycle treats both alike; what differs is where the request keeps its instance type
and which API names, creates, describes and stops its attempts, and that is all here. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class JobKind(StrEnum):
    TRAINING = "training"
    PROCESSING = "processing"

    @property
    def request_field(self) -> str:
        """The job spec's field holding the request: `training` or `processing`."""
        return self.value

    @property
    def name_field(self) -> str:
        """The request's name member: TrainingJobName or ProcessingJobName."""
        return "TrainingJobName" if self is JobKind.TRAINING else "ProcessingJobName"

    @property
    def operation(self) -> str:
        """The SageMaker operation that creates one: CreateTrainingJob or CreateProcessingJob."""
        return "CreateTrainingJob" if self is JobKind.TRAINING else "CreateProcessingJob"


def kind_of(spec: Mapping[str, Any]) -> JobKind:
    """The kind of a stored job spec (a spec stored before kinds existed is a training job)."""
    return JobKind(spec.get("kind") or JobKind.TRAINING)


def request_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The SageMaker request of a stored job spec, of its kind."""
    request: dict[str, Any] = spec[kind_of(spec).request_field]
    return request


def instance_type_of(spec: Mapping[str, Any]) -> str:
    """The instance type a job spec asks for: ResourceConfig.InstanceType of a training
    request, ProcessingResources.ClusterConfig.InstanceType of a processing request."""
    request = request_of(spec)
    if kind_of(spec) is JobKind.TRAINING:
        return str(request["ResourceConfig"]["InstanceType"])
    return str(request["ProcessingResources"]["ClusterConfig"]["InstanceType"])


def with_instance_type(
    kind: JobKind, request: Mapping[str, Any], instance_type: str
) -> dict[str, Any]:
    """A copy of `request` on `instance_type` (a capacity fallback may change it)."""
    copy = dict(request)
    if kind is JobKind.TRAINING:
        copy["ResourceConfig"] = {**copy["ResourceConfig"], "InstanceType": instance_type}
    else:
        resources = dict(copy["ProcessingResources"])
        resources["ClusterConfig"] = {**resources["ClusterConfig"], "InstanceType": instance_type}
        copy["ProcessingResources"] = resources
    return copy
