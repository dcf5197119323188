"""Retry policy: one validated value object, used by every retrying component.

Two kinds of retry share it. A job's attempts are durable: the retrier stores the next
attempt's due time (`delay_s`), so a restart loses nothing. A call that failed for a moment
(a busy database, a broker that is not up yet) is retried in place: `retrying()` gives a
tenacity loop with the policy's waits and limits. Whether an error is worth another try is
data on the error (`retriable`), never a reading of its message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


def is_retriable(error: BaseException) -> bool:
    """Whether another try may succeed: the error's own `retriable` flag (False if none)."""
    return bool(getattr(error, "retriable", False))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    initial_delay_s: wait before the second attempt (default 30 s).
    multiplier: growth per attempt, at least 1 (default 2).
    max_delay_s: cap on any single wait (default 15 min).
    jitter: fraction of the delay drawn at random, 0..1 (default 0.2).
    max_attempts: attempts in all, including the first (default 3).
    """

    initial_delay_s: float = 30.0
    multiplier: float = 2.0
    max_delay_s: float = 900.0
    jitter: float = 0.2
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0:
            raise ValueError(f"initial_delay_s must be >= 0, got {self.initial_delay_s}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier cannot be less than 1, got {self.multiplier}")
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) must be >= initial_delay_s "
                f"({self.initial_delay_s})"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        try:
            grown = self.initial_delay_s * self.multiplier ** (attempt - 1)
        except OverflowError:  # a retry that has gone on for very long: the cap holds
            grown = self.max_delay_s
        base = min(grown, self.max_delay_s)
        if self.jitter == 0:
            return base
        spread = base * self.jitter
        return max(0.0, base - spread + (rng or random).random() * 2 * spread)

    def may_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

    def retrying(
        self,
        *,
        retry_on: Callable[[BaseException], bool] = is_retriable,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
        deadline_s: float | None = None,
    ) -> tenacity.AsyncRetrying:
        """A tenacity loop that retries what `retry_on` accepts, waiting `delay_s` between
        tries, for at most `max_attempts` tries (and `deadline_s` seconds, when given); the
        last error is re-raised as it is.

            async for attempt in policy.retrying():
                with attempt:
                    await operation()

        An error with a `retry_after_s` (the other side said when) waits that long, capped
        by `max_delay_s`.
        """
        return tenacity.AsyncRetrying(
            sleep=sleep, **self._tenacity_args(retry_on, before_sleep, deadline_s)
        )

    def retrying_blocking(
        self,
        *,
        retry_on: Callable[[BaseException], bool] = is_retriable,
        sleep: Callable[[float], None] = time.sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
        deadline_s: float | None = None,
    ) -> tenacity.Retrying:
        """`retrying` for code on a worker thread, where waiting blocks the thread."""
        return tenacity.Retrying(
            sleep=sleep, **self._tenacity_args(retry_on, before_sleep, deadline_s)
        )

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        retry_on: Callable[[BaseException], bool] = is_retriable,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> T:
        """`operation()`, retried exactly as a `retrying()` loop around it would be.

        For hot paths (a store write, a launch): the first try runs on its own, and only a
        failure worth retrying enters the tenacity loop, whose bookkeeping per attempt costs
        far more than a call that succeeds. The loop sees that failure as its attempt 1, so
        waits and limits are the policy's.
        """
        try:
            return await operation()
        except Exception as exc:
            if self.max_attempts == 1 or not retry_on(exc):
                raise
            first: Exception | None = exc
        async for attempt in self.retrying(
            retry_on=retry_on, sleep=sleep, before_sleep=before_sleep
        ):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await operation()
        raise AssertionError("unreachable: retrying() re-raises the last failure")

    def call_blocking(
        self,
        operation: Callable[[], T],
        *,
        retry_on: Callable[[BaseException], bool] = is_retriable,
        sleep: Callable[[float], None] = time.sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> T:
        """`call` for code on a worker thread: the first try on its own, a failure worth
        retrying into a `retrying_blocking()` loop that counts it as attempt 1."""
        try:
            return operation()
        except Exception as exc:
            if self.max_attempts == 1 or not retry_on(exc):
                raise
            first: Exception | None = exc
        for attempt in self.retrying_blocking(
            retry_on=retry_on, sleep=sleep, before_sleep=before_sleep
        ):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return operation()
        raise AssertionError("unreachable: retrying_blocking() re-raises the last failure")

    def _tenacity_args(
        self,
        retry_on: Callable[[BaseException], bool],
        before_sleep: Callable[[tenacity.RetryCallState], None] | None,
        deadline_s: float | None,
    ) -> dict[str, Any]:
        """What both kinds of loop share: when to stop, how long to wait, what to retry."""
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
        if deadline_s is not None:
            stop = stop | tenacity.stop_after_delay(deadline_s)
        return {
            "stop": stop,
            "wait": self._tenacity_wait,
            "retry": tenacity.retry_if_exception(retry_on),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _tenacity_wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after_s = getattr(error, "retry_after_s", None)
        if isinstance(retry_after_s, int | float) and retry_after_s >= 0:
            return min(float(retry_after_s), self.max_delay_s)
        return self.delay_s(state.attempt_number)

    def merged(self, overrides: RetryPolicyOverrides | None) -> RetryPolicy:
        if overrides is None:
            return self
        fields = overrides.model_dump(exclude_none=True)
        return RetryPolicy(**{**_as_dict(self), **fields})


def _as_dict(policy: RetryPolicy) -> dict[str, float | int]:
    return {
        "initial_delay_s": policy.initial_delay_s,
        "multiplier": policy.multiplier,
        "max_delay_s": policy.max_delay_s,
        "jitter": policy.jitter,
        "max_attempts": policy.max_attempts,
    }


class RetryPolicyOverrides(BaseModel):
    """Per-job changes to the default policy; unset fields keep the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_s: float | None = Field(default=None, ge=0)
    multiplier: float | None = Field(default=None, ge=1)
    max_delay_s: float | None = Field(default=None, ge=0)
    jitter: float | None = Field(default=None, ge=0, le=1)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
