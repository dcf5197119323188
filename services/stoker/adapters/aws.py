"""aiobotocore clients built from Settings, and the one place botocore errors become ours.

Retrying a single request is botocore's job: every client runs in one of its retry modes
(`standard`, or `adaptive`, which adds a client-side rate limiter), with short connect and
read timeouts so nothing hangs silently. What reaches stoker is the request's final
outcome. `call()` turns a botocore failure into a stoker error once, at this edge:
`AwsUnavailable` (retriable: throttled, busy, unreachable, a transaction that collided
with another) or `AwsRequestRejected` (retrying will not help). Both carry AWS's error
code, which is what adapters read; nothing here reads an error's message text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog
import tenacity
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
    ReadTimeoutError,
)

from stoker.core.errors import ConfigurationError, InfrastructureUnavailable, StokerError
from stoker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

T = TypeVar("T")
RetryMode = Literal["standard", "adaptive"]

log = structlog.get_logger("stoker.adapters.aws")

# Error codes that say "try again later" rather than "your request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

# Why an item of a cancelled DynamoDB transaction was not written: these clear on their own.
TRANSIENT_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    HTTPClientError,
)


class AwsError(StokerError):
    """An AWS request that failed, with AWS's own words for why.

    code: AWS's error code (or the exception's type for a transport failure).
    cancellations: for a cancelled transaction, each item's cancellation code, in order.
    """

    def __init__(
        self, what: str, code: str, message: str, *, cancellations: Sequence[str] = ()
    ) -> None:
        super().__init__(f"{what}: {code}: {message}")
        self.code = code
        self.cancellations = tuple(cancellations)


class AwsUnavailable(AwsError, InfrastructureUnavailable):
    """An AWS request failed for a reason that clears on its own; worth another try later."""


class AwsRequestRejected(AwsError):
    """AWS refused a request for a reason retrying will not fix (bad input, missing table,
    a failed condition)."""


class PartlyUnprocessed(InfrastructureUnavailable):
    """A DynamoDB batch request came back with part of its items unprocessed (DynamoDB may
    do so under load): the rest is worth asking for again after a pause."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, what: str) -> StokerError:
    """The stoker error for a botocore failure of the operation `what`."""
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(f"{what}: no AWS credentials found")
    if isinstance(exc, _UNREACHABLE):
        return AwsUnavailable(what, type(exc).__name__, f"endpoint unreachable: {exc}")
    if isinstance(exc, ClientError):
        return _client_error(exc, what)
    if isinstance(exc, BotoCoreError | OSError | TimeoutError):
        return AwsUnavailable(what, type(exc).__name__, str(exc))
    return AwsRequestRejected(what, type(exc).__name__, str(exc))


def _client_error(exc: ClientError, what: str) -> StokerError:
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    reasons = exc.response.get("CancellationReasons", [])
    cancellations = [str(reason.get("Code", "None")) for reason in reasons]
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    transient = code in TRANSIENT_CODES or status >= 500
    if code == "TransactionCanceledException":
        # A failed condition is an answer; a collision with another transaction is not.
        transient = "ConditionalCheckFailed" not in cancellations and bool(
            TRANSIENT_CANCELLATIONS & set(cancellations)
        )
    if transient:
        return AwsUnavailable(what, code, message, cancellations=cancellations)
    return AwsRequestRejected(what, code, message, cancellations=cancellations)


async def call(what: str, operation: Callable[[], Awaitable[T]]) -> T:
    """Run one AWS operation (botocore retries it as its mode says); its failure leaves as
    AwsUnavailable, AwsRequestRejected or ConfigurationError, with the botocore error as
    the cause."""
    try:
        return await operation()
    except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
        raise translate(exc, what) from exc


def logged_retries(event: str, **fields: Any) -> Callable[[tenacity.RetryCallState], None]:
    """A `before_sleep` hook for `RetryPolicy.retrying`: one log line `event` per retry."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.info(
            event,
            attempt=state.attempt_number,
            delay_s=round(state.upcoming_sleep, 3),
            reason=str(error),
            **fields,
        )

    return before_sleep


def client_config(
    *,
    mode: RetryMode = "standard",
    max_attempts: int = 5,
    connect_timeout_s: float = 3.0,
    read_timeout_s: float = 10.0,
) -> AioConfig:
    """botocore's retries in `mode`, at most `max_attempts` tries per request (the first
    included), and timeouts short enough that an outage surfaces as an error."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    return AioConfig(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": mode, "total_max_attempts": max_attempts},
    )


def settings_config(settings: Settings) -> AioConfig:
    """`client_config` with the retry mode, attempts and timeouts of `settings`."""
    return client_config(
        mode=settings.aws_retry_mode,
        max_attempts=settings.aws_max_attempts,
        connect_timeout_s=settings.aws_connect_timeout_s,
        read_timeout_s=settings.aws_read_timeout_s,
    )


class AwsClients:
    """Long-lived aiobotocore clients for one adapter; `close()` releases them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = AsyncExitStack()
        self._session = get_session()

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "region_name": self._settings.aws_region,
            "config": settings_config(self._settings),
        }
        if self._settings.dynamodb_endpoint:
            kwargs["endpoint_url"] = self._settings.dynamodb_endpoint
        return kwargs

    async def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = await self._stack.enter_async_context(
            self._session.create_client("dynamodb", **self._kwargs())
        )
        return client

    async def dynamodb_streams(self) -> DynamoDBStreamsClient:
        client: DynamoDBStreamsClient = await self._stack.enter_async_context(
            self._session.create_client("dynamodbstreams", **self._kwargs())
        )
        return client

    async def close(self) -> None:
        await self._stack.aclose()
