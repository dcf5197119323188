"""A token bucket over an injected monotonic clock. Pure: callers do the waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

from stoker.core.clock import Clock


@dataclass
class TokenBucket:
    """`rate_per_s` tokens arrive each second, up to `burst`.

    `throttled()` halves the rate (never below `min_rate_per_s`) when the API says we were
    too fast; `recover()` creeps back towards the configured rate after successes.
    """

    clock: Clock
    rate_per_s: float
    burst: float = 1.0
    min_rate_per_s: float = 0.05
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _current_rate: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        self._tokens = self.burst
        self._updated = self.clock.monotonic()
        self._current_rate = self.rate_per_s

    @property
    def current_rate_per_s(self) -> float:
        return self._current_rate

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._current_rate)
        self._updated = now

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds to wait before one is there."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._current_rate

    def throttled(self) -> None:
        self._current_rate = max(self.min_rate_per_s, self._current_rate / 2)
        self._tokens = 0.0

    def recover(self) -> None:
        self._current_rate = min(self.rate_per_s, self._current_rate * 1.1)
