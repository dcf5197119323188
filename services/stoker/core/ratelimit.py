"""A token bucket over an injected monotonic clock, and a rate limiter of one bucket per
credential. Pure: callers do the waiting (or answer 429).

The monitor paces its SageMaker calls with a bucket. The pace must follow the clock the monitor
is given, because its tests and the monitoring benchmark run it in virtual time; botocore's
adaptive mode (which the SageMaker client also runs in) and rate-limit libraries wait on the
real clock. It is a plain bucket: the monitor's budget, kept below the account's API limit
whatever happens. Slowing down after a throttle is left to botocore's adaptive limiter and
to the RetryPolicy the monitor retries with.

The HTTP apps (the jobs API, the inference router) hold each credential to its own rate with
a `RateLimiter`: a caller over it gets `RateLimited`, which they answer 429 with the seconds
to wait in `Retry-After`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from stoker.core.clock import Clock
from stoker.core.errors import StokerError


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


class OverLimit(StokerError):
    """A caller asked for more than a limit allows (HTTP 429). `reason` names which."""

    retriable = True
    reason = "over-limit"


class RateLimited(OverLimit):
    """A credential asked faster than its rate (HTTP 429 with `Retry-After`).

    The message names the credential id (never a secret) and the limit."""

    reason = "rate-limited"

    def __init__(self, credential_id: str, retry_after_s: float, rate_per_s: float) -> None:
        super().__init__(
            f"credential {credential_id!r} is over its rate of {rate_per_s:g} requests/s; "
            f"retry in {retry_after_s:.2f} s"
        )
        self.credential_id = credential_id
        self.retry_after_s = retry_after_s
        self.rate_per_s = rate_per_s


class RateLimiter:
    """One `TokenBucket` per credential id: `rate_per_s` requests a second, up to `burst` at
    once.

    At most `max_keys` buckets are kept; the one used longest ago goes first. A bucket left
    alone for `burst / rate_per_s` seconds is full again anyway, so forgetting it loses
    nothing unless `max_keys` credentials are active within that time.
    """

    def __init__(
        self, clock: Clock, *, rate_per_s: float, burst: float, max_keys: int = 10_000
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        # Built once so a bad rate or burst is refused here, not at the first request.
        TokenBucket(clock, rate_per_s, burst)
        self._clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, credential_id: str) -> None:
        """Count one request of `credential_id`; raise `RateLimited` when it must wait."""
        bucket = self._buckets.get(credential_id)
        if bucket is None:
            bucket = TokenBucket(self._clock, self.rate_per_s, self.burst)
            self._buckets[credential_id] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(credential_id)
        wait_s = bucket.try_take()
        if wait_s > 0:
            raise RateLimited(credential_id, wait_s, self.rate_per_s)
