"""The simulator's processing jobs: SageMaker's processing-job operations, simulated.

A processing job lives as the training engine's jobs do (a timeline drawn at creation from
the same faults: startup, duration, capacity shortages, algorithm errors, quotas), in an
engine of its own, since processing and training jobs have separate names and quotas in
SageMaker. Requests and answers are translated at this edge: `ProcessingResources.
ClusterConfig` is the cluster, `ProcessingStartTime`/`ProcessingEndTime` the times.
"""

from __future__ import annotations

from typing import Any, Protocol

from stoker.simulator.errors import NAME_PATTERN, SimulatorError


class _Job(Protocol):
    request: dict[str, Any]


class TrainingOperations(Protocol):
    """What of the training engine processing jobs are simulated with."""

    @property
    def jobs(self) -> dict[str, Any]: ...

    def create_training_job(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def describe_training_job(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def list_training_jobs(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def stop_training_job(self, body: dict[str, Any]) -> dict[str, Any]: ...


def _arn(training_arn: str) -> str:
    return training_arn.replace(":training-job/", ":processing-job/", 1)


class SimulatedProcessing:
    """CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs, StopProcessingJob over
    `jobs`, an engine holding processing jobs only."""

    def __init__(self, jobs: TrainingOperations) -> None:
        self._jobs = jobs

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("ProcessingJobName")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise SimulatorError(
                "ValidationException",
                f"Value {name!r} at 'processingJobName' failed to satisfy constraint: Member "
                "must satisfy regular expression pattern: " + NAME_PATTERN.pattern,
            )
        cluster = (body.get("ProcessingResources") or {}).get("ClusterConfig") or {}
        if not cluster.get("InstanceType"):
            raise SimulatorError(
                "ValidationException", "ProcessingResources.ClusterConfig.InstanceType is required"
            )
        if not isinstance(body.get("AppSpecification"), dict):
            raise SimulatorError("ValidationException", "AppSpecification is required")
        training = {
            "TrainingJobName": name,
            "RoleArn": body.get("RoleArn"),
            "ResourceConfig": {
                "InstanceType": cluster["InstanceType"],
                "InstanceCount": cluster.get("InstanceCount") or 1,
            },
            "StoppingCondition": body.get("StoppingCondition") or {},
            "ProcessingRequest": body,
        }
        try:
            created = self._jobs.create_training_job(training)
        except SimulatorError as exc:
            if exc.code == "ResourceInUse":
                raise SimulatorError(
                    "ResourceInUse", f"Processing job {name} already exists"
                ) from exc
            raise
        return {"ProcessingJobArn": _arn(created["TrainingJobArn"])}

    def describe(self, body: dict[str, Any]) -> dict[str, Any]:
        described = self._jobs.describe_training_job(
            {"TrainingJobName": body.get("ProcessingJobName")}
        )
        job: _Job = self._jobs.jobs[described["TrainingJobName"].lower()]
        request: dict[str, Any] = job.request["ProcessingRequest"]
        out: dict[str, Any] = {
            "ProcessingJobName": described["TrainingJobName"],
            "ProcessingJobArn": _arn(described["TrainingJobArn"]),
            "ProcessingJobStatus": described["TrainingJobStatus"],
            "CreationTime": described["CreationTime"],
            "LastModifiedTime": described["LastModifiedTime"],
            "AppSpecification": request.get("AppSpecification", {}),
            "ProcessingResources": request.get("ProcessingResources", {}),
            "RoleArn": request.get("RoleArn", ""),
        }
        for name in ("ProcessingInputs", "ProcessingOutputConfig", "StoppingCondition"):
            if request.get(name):
                out[name] = request[name]
        if "FailureReason" in described:
            out["FailureReason"] = described["FailureReason"]
        if "TrainingStartTime" in described:
            out["ProcessingStartTime"] = described["TrainingStartTime"]
        if "TrainingEndTime" in described:
            out["ProcessingEndTime"] = described["TrainingEndTime"]
        return out

    def list(self, body: dict[str, Any]) -> dict[str, Any]:
        listed = self._jobs.list_training_jobs(body)
        out: dict[str, Any] = {
            "ProcessingJobSummaries": [
                {
                    "ProcessingJobName": row["TrainingJobName"],
                    "ProcessingJobArn": _arn(row["TrainingJobArn"]),
                    "CreationTime": row["CreationTime"],
                    "LastModifiedTime": row["LastModifiedTime"],
                    "ProcessingJobStatus": row["TrainingJobStatus"],
                    **(
                        {"ProcessingEndTime": row["TrainingEndTime"]}
                        if "TrainingEndTime" in row
                        else {}
                    ),
                }
                for row in listed["TrainingJobSummaries"]
            ]
        }
        if "NextToken" in listed:
            out["NextToken"] = listed["NextToken"]
        return out

    def stop(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._jobs.stop_training_job({"TrainingJobName": body.get("ProcessingJobName")})
        except SimulatorError as exc:
            raise SimulatorError(
                exc.code, exc.message.replace("training job", "processing job"), exc.status
            ) from exc
