"""The training backend port: SageMaker's training-job and processing-job APIs, reduced to
what stoker uses.

Requests keep SageMaker's own field names (a `CreateTrainingJob` or `CreateProcessingJob`
request dict), so a job spec runs unchanged on SageMaker, on the SageMaker-API simulator and
on local processes. A processing job is described with the same types as a training job
(`TrainingJobDescription`, `TrainingJobSummary`): the two APIs report the same statuses, a
failure reason and start and end times, and the lifecycle follows both the same way.
Every adapter translates its foreign errors into the hierarchy below; whether an error is
worth retrying is the `retriable` flag on its class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from stoker.core.errors import StokerError
from stoker.core.job_kind import JobKind


class TrainingJobStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in {
            TrainingJobStatus.COMPLETED,
            TrainingJobStatus.FAILED,
            TrainingJobStatus.STOPPED,
        }


@dataclass(frozen=True, slots=True)
class TrainingJobDescription:
    """What `DescribeTrainingJob` (or `DescribeProcessingJob`) says about one job. Times are
    timezone-aware UTC. For a processing job, `training_start_time` and `training_end_time`
    are its ProcessingStartTime and ProcessingEndTime, `model_artifacts` is None and the
    billable and training seconds are its run time."""

    name: str
    arn: str
    status: TrainingJobStatus
    secondary_status: str | None
    failure_reason: str | None
    creation_time: datetime
    last_modified_time: datetime
    training_start_time: datetime | None = None
    training_end_time: datetime | None = None
    billable_seconds: int | None = None
    training_seconds: int | None = None
    model_artifacts: str | None = None
    """Where the trained model landed (S3ModelArtifacts: an s3:// or file:// URI)."""
    instance_type: str | None = None


@dataclass(frozen=True, slots=True)
class TrainingJobSummary:
    """One row of `ListTrainingJobs` (or `ListProcessingJobs`)."""

    name: str
    status: TrainingJobStatus
    last_modified_time: datetime
    creation_time: datetime
    training_end_time: datetime | None = None
    secondary_status: str | None = None
    kind: JobKind = JobKind.TRAINING
    """Which listing it came from: a training job's or a processing job's."""


class TrainingBackend(Protocol):
    """Runs training jobs and processing jobs. Names are the idempotency key: one name, at
    most one job of each kind (as in SageMaker, the two kinds have separate names)."""

    calls: Counter[str]
    """API requests made so far, per SageMaker operation name (one per page for lists)."""

    async def start(self) -> None:
        """Open clients, load state kept from earlier runs."""

    async def close(self) -> None:
        """Release clients; a local backend stops the processes it still runs."""

    async def create_training_job(self, request: dict[str, Any]) -> str:
        """Start the job described by a `CreateTrainingJob` request; returns its ARN.

        Raises TrainingJobAlreadyExists when the name was used before (the job it names
        was launched: a caller retrying after a crash treats this as success).
        """

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        """The job's current state; raises TrainingJobNotFound."""

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        """Jobs matching every given filter, newest first, all pages followed.

        `last_modified_time_after` is exclusive. `max_results` caps the total returned
        (None: every match); pages are as large as the API allows, to spend few calls.
        `before_page`, when given, is awaited before each API request: a caller under a
        rate limit paces every page (2,000 listed jobs are 20 requests), not just the first.
        """

    async def stop_training_job(self, name: str) -> None:
        """Ask a running job to stop. A job that already ended is left as it is.

        Raises TrainingJobNotFound for an unknown name.
        """

    async def create_processing_job(self, request: dict[str, Any]) -> str:
        """Start the job described by a `CreateProcessingJob` request; returns its ARN.

        Raises TrainingJobAlreadyExists when the processing job name was used before.
        """

    async def describe_processing_job(self, name: str) -> TrainingJobDescription:
        """The processing job's current state; raises TrainingJobNotFound."""

    async def list_processing_jobs(
        self,
        *,
        last_modified_time_after: datetime | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        """Processing jobs modified after `last_modified_time_after` (exclusive; None: all),
        newest first, all pages followed; `before_page` as in `list_training_jobs`."""

    async def stop_processing_job(self, name: str) -> None:
        """Ask a running processing job to stop; one that ended is left as it is. Raises
        TrainingJobNotFound for an unknown name."""


class TrainingRequestValidator(Protocol):
    """Checks a request (`CreateTrainingJob`, or `CreateProcessingJob` for a validator made
    for it) against the API's own shape, before it is stored."""

    def problems(self, request: Mapping[str, Any]) -> dict[str, str]:
        """What is wrong with `request`, by field: a dotted path from the request's root
        (`ResourceConfig.InstanceCount`, `InputDataConfig.0.ChannelName`; "" for the root)
        to what is wrong with it. Empty when the request is well formed."""


# --- errors ---------------------------------------------------------------------------


class TrainingBackendError(StokerError):
    """A training backend refused or failed a request. `code` is SageMaker's error code."""

    code: str = "TrainingBackendError"
    back_pressure: bool = False
    """True when the request was fine but a quota is full: wait for capacity, do not fail."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TrainingJobAlreadyExists(TrainingBackendError):
    """A job with this name exists already: the launch it stands for happened."""

    code = "ResourceInUse"

    def __init__(self, name: str, message: str | None = None, *, kind: str = "training") -> None:
        super().__init__(message or f"{kind} job {name!r} already exists")
        self.name = name


class TrainingJobNotFound(TrainingBackendError):
    code = "ResourceNotFound"

    def __init__(self, name: str, message: str | None = None, *, kind: str = "training") -> None:
        super().__init__(message or f"{kind} job {name!r} does not exist")
        self.name = name


class Throttled(TrainingBackendError):
    """The API's request rate was exceeded; back off and try again."""

    code = "ThrottlingException"
    retriable = True


class ResourceLimitExceeded(TrainingBackendError):
    """The account quota for the instance type is used up: back-pressure, not failure.

    Retry once running jobs finish (or with a fallback instance type).
    """

    code = "ResourceLimitExceeded"
    retriable = True
    back_pressure = True


class InsufficientCapacity(TrainingBackendError):
    """The cloud has no capacity of the instance type right now."""

    code = "CapacityError"
    retriable = True


class ServiceUnavailable(TrainingBackendError):
    """The API failed on its side (5xx) or could not be reached."""

    code = "InternalFailure"
    retriable = True


class InvalidRequest(TrainingBackendError):
    """The request is wrong (validation, missing role, bad image); retrying cannot help."""

    code = "ValidationException"
