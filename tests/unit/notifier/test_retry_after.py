"""Retry-After parsing and the delivery backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from stoker.notifier.retry import DeliveryRetry, parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, expected: float) -> None:
    """Delta-seconds and HTTP dates both give a wait; junk and absence give None."""
    assert parse_retry_after(header, NOW) == expected


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A receiver's own wait is used exactly, but never longer than max_backoff_s."""
    policy = DeliveryRetry(max_backoff_s=60)
    assert policy.delay_s(1, 7.0) == 7.0
    assert policy.delay_s(1, 3600.0) == 60.0


def test_backoff_doubles_without_retry_after_and_is_capped() -> None:
    """Without Retry-After: initial * 2**(n-1), capped, with no jitter when jitter=0."""
    policy = DeliveryRetry(initial_backoff_s=1, max_backoff_s=10, jitter=0)
    assert [policy.delay_s(n, None) for n in range(1, 6)] == [1, 2, 4, 8, 10]


def test_jitter_stays_within_its_fraction() -> None:
    """Jittered waits spread around the base by at most the jitter fraction."""
    policy = DeliveryRetry(initial_backoff_s=10, max_backoff_s=10, jitter=0.2)
    rng = random.Random(7)
    waits = [policy.delay_s(1, None, rng) for _ in range(200)]
    assert min(waits) >= 8
    assert max(waits) <= 12


def test_gives_up_after_max_attempts() -> None:
    """The attempt numbered max_attempts is the last."""
    policy = DeliveryRetry(max_attempts=3)
    assert not policy.gives_up_after(2)
    assert policy.gives_up_after(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1, got 0"),
        ({"initial_backoff_s": -1}, "initial_backoff_s must be >= 0, got -1"),
        ({"initial_backoff_s": 5, "max_backoff_s": 1}, r"max_backoff_s \(1\)"),
        ({"jitter": 2}, "jitter must be within 0..1, got 2"),
    ],
)
def test_bad_retry_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    """Each bad value is named in the error."""
    with pytest.raises(ValueError, match=message):
        DeliveryRetry(**kwargs)  # type: ignore[arg-type]
