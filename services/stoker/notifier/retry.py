"""How a failed delivery is retried: `Retry-After` when the receiver gives one,
capped exponential backoff otherwise. Pure: the sender supplies time and sleeping."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date).

    None when the header is absent or unreadable; a date in the past means "now" (0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class DeliveryRetry:
    """Retry rules for one message.

    max_attempts: sends in all before the entry is marked failed (default 8).
    initial_backoff_s: first wait without a Retry-After, doubled each time (default 1 s).
    max_backoff_s: cap on any wait, Retry-After included (default 300 s), so a receiver
        asking for an hour cannot park a message silently.
    jitter: fraction of a backoff drawn at random, 0..1 (default 0.2); Retry-After is
        honoured exactly.
    """

    max_attempts: int = 8
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0:
            raise ValueError(f"initial_backoff_s must be >= 0, got {self.initial_backoff_s}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= initial_backoff_s "
                f"({self.initial_backoff_s})"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")

    def delay_s(
        self, attempt: int, retry_after_s: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if retry_after_s is not None:
            return min(retry_after_s, self.max_backoff_s)
        base = min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        spread = base * self.jitter
        jittered: float = base - spread + (rng or random).random() * 2 * spread
        return max(0.0, jittered)

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
