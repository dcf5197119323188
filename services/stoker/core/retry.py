"""Retry policy: one validated value object, used by every retrying component."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


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
        base = min(self.initial_delay_s * self.multiplier ** (attempt - 1), self.max_delay_s)
        if self.jitter == 0:
            return base
        spread = base * self.jitter
        return max(0.0, base - spread + (rng or random).random() * 2 * spread)

    def may_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

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
