"""A token bucket over an injected monotonic clock. Pure: callers do the waiting.

The monitor paces its SageMaker calls with it. The pace must follow the clock the monitor
is given, because its tests and the monitoring benchmark run it in virtual time; botocore's
adaptive mode (which the SageMaker client also runs in) and rate-limit libraries wait on the
real clock. It is a plain bucket: the monitor's budget, kept below the account's API limit
whatever happens. Slowing down after a throttle is left to botocore's adaptive limiter and
to the RetryPolicy the monitor retries with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stoker.core.clock import Clock


@dataclass
class TokenBucket:
    """`rate_per_s` tokens arrive each second, up to `burst` (it starts full)."""

    clock: Clock
    rate_per_s: float
    burst: float = 1.0
    _tokens: float = field(init=False)
    _updated: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        self._tokens = self.burst
        self._updated = self.clock.monotonic()

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds to wait before one is there."""
        now = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate_per_s
