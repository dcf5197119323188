"""The SageMaker training backend over aiobotocore (real SageMaker, or the simulator).

The client runs in botocore's `adaptive` retry mode: once SageMaker throttles it, its own
rate limiter spaces the requests that follow, across every caller in the process. It makes
one try per request by default (`max_attempts=1`): the launcher and the monitor retry with
stoker's RetryPolicy, because between two tries of CreateTrainingJob the launcher records
the job as Launching and checks that it was not stopped, and the monitor paces each try.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from stoker.core.errors import ConfigurationError, StokerError
from stoker.core.job_kind import JobKind
from stoker.logs import get_logger
from stoker.ports.training import (
    InsufficientCapacity,
    InvalidRequest,
    ResourceLimitExceeded,
    ServiceUnavailable,
    Throttled,
    TrainingBackendError,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
    TrainingJobSummary,
)
from stoker.settings import Settings
from stoker.telemetry import metrics

if TYPE_CHECKING:
    from types_aiobotocore_sagemaker import SageMakerClient

log = get_logger("stoker.adapters.training.sagemaker")

PAGE_SIZE = 100  # the API's largest page: fewest calls per listing
_THROTTLING = frozenset(
    {"ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded"}
)
_CAPACITY = frozenset({"CapacityError", "InsufficientCapacity", "InsufficientCapacityError"})
_NOT_FOUND_HINTS = ("not found", "does not exist", "could not find")
_TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    HTTPClientError,
)


def translate_client_error(exc: ClientError, operation: str, name: str | None) -> StokerError:
    """The stoker error for a SageMaker API error answer."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"{operation}: {code}: {message}"
    if name is not None:
        about_job = _about_job(code, message, name, text)
        if about_job is not None:
            return about_job
    if code in _THROTTLING or status == 429:
        return Throttled(text, code=code)
    if code == "ResourceLimitExceeded":
        return ResourceLimitExceeded(text)
    if code in _CAPACITY:
        return InsufficientCapacity(text, code=code)
    if status >= 500 or code in {"InternalFailure", "InternalServerError", "ServiceUnavailable"}:
        return ServiceUnavailable(text, code=code or str(status))
    return InvalidRequest(text, code=code or str(status))


def _about_job(code: str, message: str, name: str, text: str) -> StokerError | None:
    """The job already exists, or does not exist at all."""
    if code == "ResourceInUse" and "already exists" in message:
        return TrainingJobAlreadyExists(name, text)
    # SageMaker reports an unknown training job as a ValidationException, not ResourceNotFound.
    lowered = message.lower()
    if code == "ResourceNotFound" or (
        code == "ValidationException" and any(hint in lowered for hint in _NOT_FOUND_HINTS)
    ):
        return TrainingJobNotFound(name, text)
    return None


@contextmanager
def translated(operation: str, name: str | None = None) -> Iterator[None]:
    """Run an API call; botocore failures leave as stoker errors. Each call is counted by
    operation and outcome (`stoker_sagemaker_calls_total`), throttling apart too."""
    outcome = "ok"
    try:
        with _translating(operation, name):
            yield
    except StokerError as exc:
        outcome = type(exc).__name__
        raise
    except BaseException:  # cancelled while waiting for the answer
        outcome = "error"
        raise
    finally:
        metrics.labelled(metrics.SAGEMAKER_CALLS, operation, outcome).inc()
        if outcome == Throttled.__name__:
            metrics.labelled(metrics.SAGEMAKER_THROTTLES, operation).inc()


@contextmanager
def _translating(operation: str, name: str | None) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise translate_client_error(exc, operation, name) from exc
    except ParamValidationError as exc:
        raise InvalidRequest(f"{operation}: {exc}") from exc
    except NoCredentialsError as exc:
        raise ConfigurationError(f"{operation}: no AWS credentials found") from exc
    except _TRANSPORT_ERRORS as exc:
        raise ServiceUnavailable(f"{operation}: endpoint unreachable: {exc}") from exc
    except BotoCoreError as exc:
        raise TrainingBackendError(f"{operation}: {type(exc).__name__}: {exc}") from exc


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _required_utc(value: datetime) -> datetime:
    converted = _utc(value)
    assert converted is not None
    return converted


def _status(value: str) -> TrainingJobStatus:
    try:
        return TrainingJobStatus(value)
    except ValueError as exc:
        raise TrainingBackendError(f"unexpected training job status {value!r}") from exc


def describe_from_response(response: dict[str, Any]) -> TrainingJobDescription:
    """A TrainingJobDescription from a DescribeTrainingJob answer."""
    billable = response.get("BillableTimeInSeconds")
    training = response.get("TrainingTimeInSeconds")
    return TrainingJobDescription(
        name=response["TrainingJobName"],
        arn=response["TrainingJobArn"],
        status=_status(response["TrainingJobStatus"]),
        secondary_status=response.get("SecondaryStatus"),
        failure_reason=response.get("FailureReason"),
        creation_time=_required_utc(response["CreationTime"]),
        last_modified_time=_required_utc(
            response.get("LastModifiedTime") or response["CreationTime"]
        ),
        training_start_time=_utc(response.get("TrainingStartTime")),
        training_end_time=_utc(response.get("TrainingEndTime")),
        billable_seconds=int(billable) if billable is not None else None,
        training_seconds=int(training) if training is not None else None,
        model_artifacts=(response.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        instance_type=(response.get("ResourceConfig") or {}).get("InstanceType"),
    )


def describe_from_processing_response(response: dict[str, Any]) -> TrainingJobDescription:
    """A TrainingJobDescription from a DescribeProcessingJob answer."""
    started = _utc(response.get("ProcessingStartTime"))
    ended = _utc(response.get("ProcessingEndTime"))
    seconds = round((ended - started).total_seconds()) if started and ended else None
    cluster = (response.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    reason = response.get("FailureReason")
    exit_message = response.get("ExitMessage")
    if reason and exit_message and exit_message not in reason:
        reason = f"{reason}; {exit_message}"
    return TrainingJobDescription(
        name=response["ProcessingJobName"],
        arn=response["ProcessingJobArn"],
        status=_status(response["ProcessingJobStatus"]),
        secondary_status=None,
        failure_reason=reason,
        creation_time=_required_utc(response["CreationTime"]),
        last_modified_time=_required_utc(
            response.get("LastModifiedTime") or response["CreationTime"]
        ),
        training_start_time=started,
        training_end_time=ended,
        billable_seconds=seconds,
        training_seconds=seconds,
        instance_type=cluster.get("InstanceType"),
    )


class SageMakerBackend:
    """TrainingBackend on the SageMaker API. `endpoint_url` points it at the simulator;
    `client` hands it a client made elsewhere (then `start` makes none and `close` leaves
    the client to its owner)."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        max_attempts: int = 1,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        client: SageMakerClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.calls: Counter[str] = Counter()
        self._region = region
        self._endpoint_url = endpoint_url
        self._config = AioConfig(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": max_attempts, "mode": "adaptive"},
        )
        self._stack = AsyncExitStack()
        self._given = client
        self._client: SageMakerClient | None = client

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SageMakerBackend:
        return cls(region=settings.aws_region, endpoint_url=settings.sagemaker_endpoint, **kwargs)

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "sagemaker",
                region_name=self._region,
                endpoint_url=self._endpoint_url,
                config=self._config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = self._given

    @property
    def client(self) -> SageMakerClient:
        if self._client is None:
            raise RuntimeError("SageMakerBackend.start() has not been called")
        return self._client

    async def create_training_job(self, request: dict[str, Any]) -> str:
        name = request.get("TrainingJobName")
        if not isinstance(name, str):
            raise InvalidRequest("CreateTrainingJob: TrainingJobName is required")
        self.calls["CreateTrainingJob"] += 1
        with translated("CreateTrainingJob", name):
            response = await self.client.create_training_job(**request)
        log.info("training job created", training_job_name=name)
        return response["TrainingJobArn"]

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        self.calls["DescribeTrainingJob"] += 1
        with translated("DescribeTrainingJob", name):
            response = await self.client.describe_training_job(TrainingJobName=name)
        return describe_from_response(dict(response))

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        if max_results is not None and max_results < 1:
            raise ValueError(f"max_results must be >= 1 or None, got {max_results}")
        params: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
        if status_equals is not None:
            params["StatusEquals"] = status_equals.value
        if last_modified_time_after is not None:
            params["LastModifiedTimeAfter"] = last_modified_time_after
        if name_contains:
            params["NameContains"] = name_contains
        found: list[TrainingJobSummary] = []
        token: str | None = None
        while True:
            wanted = PAGE_SIZE if max_results is None else min(PAGE_SIZE, max_results - len(found))
            page_params = {**params, "MaxResults": wanted}
            if token:
                page_params["NextToken"] = token
            if before_page is not None:
                await before_page()
            self.calls["ListTrainingJobs"] += 1
            with translated("ListTrainingJobs"):
                response = await self.client.list_training_jobs(**page_params)
            found.extend(
                TrainingJobSummary(
                    name=row["TrainingJobName"],
                    status=_status(row["TrainingJobStatus"]),
                    last_modified_time=_required_utc(
                        row.get("LastModifiedTime") or row["CreationTime"]
                    ),
                    creation_time=_required_utc(row["CreationTime"]),
                    training_end_time=_utc(row.get("TrainingEndTime")),
                    secondary_status=row.get("SecondaryStatus"),
                )
                for row in response.get("TrainingJobSummaries", [])
            )
            token = response.get("NextToken")
            if not token or (max_results is not None and len(found) >= max_results):
                return found

    async def create_processing_job(self, request: dict[str, Any]) -> str:
        name = request.get("ProcessingJobName")
        if not isinstance(name, str):
            raise InvalidRequest("CreateProcessingJob: ProcessingJobName is required")
        self.calls["CreateProcessingJob"] += 1
        with translated("CreateProcessingJob", name):
            response = await self.client.create_processing_job(**request)
        log.info("processing job created", processing_job_name=name)
        return response["ProcessingJobArn"]

    async def describe_processing_job(self, name: str) -> TrainingJobDescription:
        self.calls["DescribeProcessingJob"] += 1
        with translated("DescribeProcessingJob", name):
            response = await self.client.describe_processing_job(ProcessingJobName=name)
        return describe_from_processing_response(dict(response))

    async def list_processing_jobs(
        self,
        *,
        last_modified_time_after: datetime | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        params: dict[str, Any] = {
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": PAGE_SIZE,
        }
        if last_modified_time_after is not None:
            params["LastModifiedTimeAfter"] = last_modified_time_after
        found: list[TrainingJobSummary] = []
        while True:
            if before_page is not None:
                await before_page()
            self.calls["ListProcessingJobs"] += 1
            with translated("ListProcessingJobs"):
                response = await self.client.list_processing_jobs(**params)
            found.extend(
                TrainingJobSummary(
                    name=row["ProcessingJobName"],
                    status=_status(row["ProcessingJobStatus"]),
                    last_modified_time=_required_utc(
                        row.get("LastModifiedTime") or row["CreationTime"]
                    ),
                    creation_time=_required_utc(row["CreationTime"]),
                    training_end_time=_utc(row.get("ProcessingEndTime")),
                    kind=JobKind.PROCESSING,
                )
                for row in response.get("ProcessingJobSummaries", [])
            )
            token = response.get("NextToken")
            if not token:
                return found
            params["NextToken"] = token

    async def stop_processing_job(self, name: str) -> None:
        self.calls["StopProcessingJob"] += 1
        try:
            with translated("StopProcessingJob", name):
                await self.client.stop_processing_job(ProcessingJobName=name)
        except InvalidRequest as exc:
            if "status" not in str(exc).lower():
                raise
            log.info("processing job already ended; nothing to stop", processing_job_name=name)

    async def stop_training_job(self, name: str) -> None:
        self.calls["StopTrainingJob"] += 1
        try:
            with translated("StopTrainingJob", name):
                await self.client.stop_training_job(TrainingJobName=name)
        except InvalidRequest as exc:
            # SageMaker refuses to stop a job that already ended; for us that is done.
            if "status" not in str(exc).lower():
                raise
            log.info("training job already ended; nothing to stop", training_job_name=name)
