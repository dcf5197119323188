"""aiobotocore clients built from Settings, and the one place botocore errors become ours.

Every AWS call an adapter makes goes through `call()`: transient failures (the endpoint is
unreachable, throttled or busy) are retried with capped exponential backoff and a warning
per try, then surface as InfrastructureUnavailable. Nothing hangs silently: the client has
short connect and read timeouts and botocore's own retries are kept to one extra try.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
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

log = structlog.get_logger("stoker.adapters.aws")

# Error codes that say "try again later" rather than "your request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)


class AwsRequestRejected(StokerError):
    """AWS refused a request for a reason retrying will not fix (bad input, missing table)."""

    def __init__(self, what: str, code: str, message: str) -> None:
        super().__init__(f"{what}: {code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How `call()` retries transient AWS failures.

    attempts: tries in all before giving up (default 5).
    initial_backoff_s: first wait, doubled each try (default 0.1 s).
    max_backoff_s: cap on one wait (default 2 s).
    """

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                "need 0 <= initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, what: str) -> StokerError:
    """The stoker error for a botocore failure of the operation `what`."""
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(f"{what}: no AWS credentials found")
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | HTTPClientError,
    ):
        return InfrastructureUnavailable(f"{what}: endpoint unreachable: {exc}")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code in TRANSIENT_CODES:
            return InfrastructureUnavailable(f"{what}: {code}: {message}")
        return AwsRequestRejected(what, code, message)
    if isinstance(exc, BotoCoreError | OSError | TimeoutError):
        return InfrastructureUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return AwsRequestRejected(what, type(exc).__name__, str(exc))


async def call(
    what: str,
    operation: Callable[[], Awaitable[T]],
    *,
    retry: RetryConfig | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run one AWS operation; retry transient failures, translate the rest.

    ClientErrors that are not transient are re-raised untouched so the adapter can read
    their code (ConditionalCheckFailed, TransactionCanceled) and decide what they mean.
    """
    policy = retry or RetryConfig()
    for attempt in range(1, policy.attempts + 1):
        cause: Exception
        try:
            return await operation()
        except ClientError as exc:
            if error_code(exc) not in TRANSIENT_CODES:
                raise
            failure, cause = translate(exc, what), exc
        except (TimeoutError, BotoCoreError, OSError) as exc:
            failure, cause = translate(exc, what), exc
            if not failure.retriable:
                raise failure from exc
        if attempt == policy.attempts:
            log.error("aws call failed; giving up", operation=what, attempts=attempt)
            raise failure from cause
        delay = min(policy.initial_backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
        delay *= 0.5 + random.random() / 2  # jitter so many clients do not retry in step
        log.warning(
            "aws call failed; retrying",
            operation=what,
            attempt=attempt,
            of=policy.attempts,
            delay_s=round(delay, 3),
            reason=str(failure),
        )
        await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def client_config() -> AioConfig:
    # Short timeouts and one botocore retry: our own loop in `call()` does the backing off
    # and logs each try, so an outage shows up in the logs instead of as a silent stall.
    return AioConfig(
        connect_timeout=3,
        read_timeout=20,
        retries={"max_attempts": 2, "mode": "standard"},
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
            "config": client_config(),
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
