"""Retry-After parsing and the delivery retry policy the notifier settings give."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from stoker.core.retry_after import parse_retry_after
from stoker.notifier.config import NotifySettings
from stoker.ports.channel import DeliveryDeferred

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


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A receiver's own wait is used exactly, but never longer than max_backoff_s."""
    policy = NotifySettings(max_backoff_s=60, jitter=0).retry()
    waits: list[float] = []
    answers = [
        DeliveryDeferred("429", status=429, retry_after_s=7.0),
        DeliveryDeferred("429", status=429, retry_after_s=3600.0),
        None,
    ]

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async for attempt in policy.retrying(sleep=record):
        with attempt:
            answer = answers.pop(0)
            if answer is not None:
                raise answer
    assert waits == [7.0, 60.0]


def test_backoff_doubles_without_retry_after_and_is_capped() -> None:
    """Without Retry-After: initial * 2**(n-1), capped, with no jitter when jitter=0."""
    policy = NotifySettings(initial_backoff_s=1, max_backoff_s=10, jitter=0).retry()
    assert [policy.delay_s(n) for n in range(1, 6)] == [1, 2, 4, 8, 10]


def test_jitter_stays_within_its_fraction() -> None:
    """Jittered waits spread around the base by at most the jitter fraction."""
    policy = NotifySettings(initial_backoff_s=10, max_backoff_s=10, jitter=0.2).retry()
    rng = random.Random(7)
    waits = [policy.delay_s(1, rng) for _ in range(200)]
    assert min(waits) >= 8
    assert max(waits) <= 12


def test_max_attempts_counts_every_send() -> None:
    """The send numbered max_attempts is the last."""
    policy = NotifySettings(max_attempts=3).retry()
    assert policy.may_retry(2)
    assert not policy.may_retry(3)


def test_a_cap_below_the_first_backoff_is_raised_to_it() -> None:
    """max_backoff_s under initial_backoff_s does not refuse to start: the cap is the first
    backoff."""
    policy = NotifySettings(initial_backoff_s=5, max_backoff_s=1, jitter=0).retry()
    assert [policy.delay_s(n) for n in (1, 2)] == [5, 5]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_backoff_s": -1}, "initial_backoff_s"),
        ({"max_backoff_s": -1}, "max_backoff_s"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_bad_retry_settings_are_refused(kwargs: dict[str, float], field: str) -> None:
    """Each bad value is named in the error."""
    with pytest.raises(ValidationError, match=field):
        NotifySettings(**kwargs)  # type: ignore[arg-type]
