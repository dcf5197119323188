"""The token bucket the monitor paces its API calls with, and the per-credential rate
limiter of the HTTP apps, on a fake clock."""

from __future__ import annotations

import pytest

from stoker.core.clock import FakeClock
from stoker.core.ratelimit import RateLimited, RateLimiter, TokenBucket


def test_a_full_bucket_gives_its_burst_then_one_token_per_interval() -> None:
    """Burst 2 at 2/s: two tokens at once, then a wait of half a second per token."""
    clock = FakeClock()
    bucket = TokenBucket(clock, rate_per_s=2, burst=2)
    assert [bucket.try_take(), bucket.try_take()] == [0, 0]
    assert bucket.try_take() == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.try_take() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.try_take() == 0


def test_idle_time_refills_no_more_than_the_burst() -> None:
    """A long pause leaves the bucket full, not fuller."""
    clock = FakeClock()
    bucket = TokenBucket(clock, rate_per_s=1, burst=3)
    clock.advance(3600)
    assert [bucket.try_take() for _ in range(3)] == [0, 0, 0]
    assert bucket.try_take() == pytest.approx(1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0}, "rate_per_s must be > 0, got 0"),
        ({"rate_per_s": 1, "burst": 0.5}, "burst must be >= 1, got 0.5"),
    ],
)
def test_bad_buckets_are_refused_with_the_value(kwargs: dict[str, float], message: str) -> None:
    """Each bad value is named in the error."""
    with pytest.raises(ValueError, match=message):
        TokenBucket(FakeClock(), **kwargs)


def test_each_credential_has_its_own_bucket() -> None:
    """One credential over its rate is refused with the wait; another is not slowed."""
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=1, burst=2)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as caught:
        limiter.check("a")
    assert caught.value.retry_after_s == pytest.approx(1.0)
    assert caught.value.credential_id == "a"
    limiter.check("b")
    clock.advance(1)
    limiter.check("a")


def test_forgotten_buckets_start_full_again() -> None:
    """Past max_keys the bucket used longest ago is dropped: its credential starts afresh
    (it would have refilled by then anyway); recently used ones are kept."""
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=1, burst=1, max_keys=2)
    limiter.check("a")
    limiter.check("b")
    with pytest.raises(RateLimited):
        limiter.check("b")
    limiter.check("c")  # drops "a", the least recently used
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("c")


def test_a_bad_limiter_is_refused_at_construction() -> None:
    """Rate, burst and the key bound are checked when the limiter is built."""
    with pytest.raises(ValueError, match="rate_per_s must be > 0"):
        RateLimiter(FakeClock(), rate_per_s=0, burst=1)
    with pytest.raises(ValueError, match="max_keys must be >= 1"):
        RateLimiter(FakeClock(), rate_per_s=1, burst=1, max_keys=0)
