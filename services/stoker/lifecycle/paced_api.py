"""The monitor's SageMaker calls: each under its share of the API rate, each retried.

Every request waits for a token of a bucket on the clock the monitor is given (its tests and
the monitoring benchmark run in virtual time), and a throttled or failed call is retried by
a `RetryPolicy` when the error says another try may succeed, each try with its own token.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import structlog
import tenacity

from stoker.core.clock import Clock
from stoker.core.job_kind import JobKind
from stoker.core.ratelimit import TokenBucket
from stoker.core.retry import RetryPolicy
from stoker.ports.training import (
    Throttled,
    TrainingBackend,
    TrainingJobDescription,
    TrainingJobSummary,
)

log = structlog.get_logger("stoker.monitor")
T = TypeVar("T")


class PacedApi:
    """`backend`'s calls under a token bucket (`rate_per_s`, `burst`) and `retry`."""

    def __init__(
        self,
        backend: TrainingBackend,
        clock: Clock,
        *,
        rate_per_s: float,
        burst: float,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._backend = backend
        self._bucket = TokenBucket(clock, rate_per_s, burst)
        self._retry = retry
        self._sleep = sleep

    async def take_token(self) -> None:
        while (wait := self._bucket.try_take()) > 0:
            await self._sleep(wait)

    async def list_changed(
        self, since: datetime, *, processing: bool = False
    ) -> list[TrainingJobSummary]:
        """Every training job changed after `since`, and with `processing` every processing
        job too; each page of a listing is one request and waits for its own token (2,000
        listed jobs are 20 requests)."""
        found = await self.call(
            lambda: self._backend.list_training_jobs(
                last_modified_time_after=since, before_page=self.take_token
            ),
            paces_itself=True,
        )
        if processing:
            found += await self.call(
                lambda: self._backend.list_processing_jobs(
                    last_modified_time_after=since, before_page=self.take_token
                ),
                paces_itself=True,
            )
        return found

    async def describe(self, name: str, kind: JobKind = JobKind.TRAINING) -> TrainingJobDescription:
        describe = (
            self._backend.describe_processing_job
            if kind is JobKind.PROCESSING
            else self._backend.describe_training_job
        )
        return await self.call(functools.partial(describe, name))

    async def stop(self, name: str, kind: JobKind = JobKind.TRAINING) -> None:
        stop = (
            self._backend.stop_processing_job
            if kind is JobKind.PROCESSING
            else self._backend.stop_training_job
        )
        await self.call(functools.partial(stop, name))

    async def call(self, request: Callable[[], Awaitable[T]], *, paces_itself: bool = False) -> T:
        """One API call under the token bucket, retried when the error says it is worth it
        (a throttle, a 5xx); every try takes its own token.

        `paces_itself`: the request takes a token per API request it makes (a paged listing).
        """

        async def paced() -> T:
            if not paces_itself:
                await self.take_token()
            return await request()

        return await self._retry.call(paced, sleep=self._sleep, before_sleep=_log_api_retry)


def _log_api_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "SageMaker call failed; backing off"
        if not isinstance(error, Throttled)
        else "SageMaker throttled the monitor; backing off",
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 3),
        error=str(error),
    )
