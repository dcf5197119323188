"""RetryPolicy: validated at construction, exponential with a cap, jitter bounded."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.core.retry import RetryPolicy, RetryPolicyOverrides


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"multiplier": 0.5}, "multiplier cannot be less than 1, got 0.5"),
        ({"initial_delay_s": -1}, "initial_delay_s must be >= 0, got -1"),
        ({"jitter": 2}, "jitter must be within 0..1, got 2"),
        ({"max_attempts": 0}, "max_attempts must be >= 1, got 0"),
        ({"initial_delay_s": 10, "max_delay_s": 5}, "max_delay_s \\(5\\) must be >= "),
    ],
)
def test_bad_policy_is_refused_with_the_value(kwargs: dict[str, float], message: str) -> None:
    """Each invalid field is named together with the bad value."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_delays_grow_then_cap_without_jitter() -> None:
    """1, 2, 4, 8 then capped at 10."""
    policy = RetryPolicy(initial_delay_s=1, multiplier=2, max_delay_s=10, jitter=0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [1, 2, 4, 8, 10]


@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers())
def test_jitter_stays_within_its_band(attempt: int, seed: int) -> None:
    """With jitter j a delay d lands in [d(1-j), d(1+j)]."""
    policy = RetryPolicy(initial_delay_s=3, multiplier=1.7, max_delay_s=600, jitter=0.25)
    base = RetryPolicy(initial_delay_s=3, multiplier=1.7, max_delay_s=600, jitter=0).delay_s(
        attempt
    )
    delay = policy.delay_s(attempt, random.Random(seed))
    assert base * 0.75 - 1e-9 <= delay <= base * 1.25 + 1e-9


def test_may_retry_counts_attempts_including_the_first() -> None:
    """max_attempts=3 allows two retries after the first attempt."""
    policy = RetryPolicy(max_attempts=3)
    assert [policy.may_retry(n) for n in (1, 2, 3)] == [True, True, False]


def test_overrides_replace_only_what_they_set() -> None:
    """A job's overrides change the named fields and keep the rest."""
    merged = RetryPolicy(max_attempts=3, initial_delay_s=30).merged(
        RetryPolicyOverrides(max_attempts=5)
    )
    assert (merged.max_attempts, merged.initial_delay_s) == (5, 30)


class _Busy(Exception):
    retriable = True


class _Wrong(Exception):
    retriable = False


class _SlowDown(Exception):
    retriable = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("slow down")
        self.retry_after_s = retry_after_s


async def test_retrying_retries_what_is_retriable_with_the_policys_waits() -> None:
    """Two busy answers then success: two waits of the policy's delays, no real sleep."""
    policy = RetryPolicy(initial_delay_s=1, multiplier=3, max_delay_s=100, jitter=0)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    outcomes: list[Exception | None] = [_Busy(), _Busy(), None]
    async for attempt in policy.retrying(sleep=record):
        with attempt:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
    assert waits == [1, 3]


async def test_retrying_reraises_a_terminal_error_at_once() -> None:
    """An error that says it is not retriable is raised on the first try, as it is."""
    policy = RetryPolicy(initial_delay_s=1, jitter=0, max_attempts=5)
    tries = 0

    async def no_sleep(_seconds: float) -> None:
        raise AssertionError("a terminal error must not wait")

    async def fail_once() -> None:
        nonlocal tries
        async for attempt in policy.retrying(sleep=no_sleep):
            with attempt:
                tries += 1
                raise _Wrong("bad request")

    with pytest.raises(_Wrong):
        await fail_once()
    assert tries == 1


async def test_retrying_gives_up_after_max_attempts_with_the_last_error() -> None:
    """max_attempts tries in all, then the last error itself (not a wrapper)."""
    policy = RetryPolicy(initial_delay_s=0, max_delay_s=0, jitter=0, max_attempts=3)
    tries = 0

    async def always_busy() -> None:
        nonlocal tries
        async for attempt in policy.retrying():
            with attempt:
                tries += 1
                raise _Busy()

    with pytest.raises(_Busy):
        await always_busy()
    assert tries == 3


def test_retrying_blocking_honours_retry_after_capped_by_max_delay() -> None:
    """A Retry-After from the other side is the wait, never longer than max_delay_s."""
    policy = RetryPolicy(initial_delay_s=1, max_delay_s=30, jitter=0)
    waits: list[float] = []
    outcomes: list[Exception | None] = [_SlowDown(7), _SlowDown(3600), None]
    for attempt in policy.retrying_blocking(sleep=waits.append):
        with attempt:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome
    assert waits == [7, 30]


def test_a_very_late_attempt_waits_the_cap_instead_of_overflowing() -> None:
    """multiplier ** attempt leaves the float range after about a thousand tries."""
    policy = RetryPolicy(initial_delay_s=0.2, multiplier=2, max_delay_s=5, jitter=0)
    assert policy.delay_s(5_000) == 5


async def test_call_retries_like_retrying_counting_the_first_try() -> None:
    """`call`: the same waits and limits as a retrying() loop, the first try included."""
    policy = RetryPolicy(initial_delay_s=1, multiplier=3, max_delay_s=100, jitter=0)
    waits: list[float] = []
    outcomes: list[Exception | None] = [_Busy(), _Busy(), None]

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def operation() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "done"

    assert await policy.call(operation, sleep=record) == "done"
    assert waits == [1, 3]


async def test_call_gives_up_after_max_attempts_and_skips_terminal_errors() -> None:
    """max_attempts calls in all for a retriable error; one call for a terminal one."""
    policy = RetryPolicy(initial_delay_s=0, max_delay_s=0, jitter=0, max_attempts=3)
    calls: list[type[Exception]] = []

    def failing(error: type[Exception]) -> Callable[[], Awaitable[None]]:
        async def operation() -> None:
            calls.append(error)
            raise error()

        return operation

    with pytest.raises(_Busy):
        await policy.call(failing(_Busy))
    with pytest.raises(_Wrong):
        await policy.call(failing(_Wrong))
    assert calls == [_Busy, _Busy, _Busy, _Wrong]


async def test_call_honours_retry_after_and_a_custom_retry_on() -> None:
    """retry_on decides what is retried; a Retry-After on the error is the wait."""
    policy = RetryPolicy(initial_delay_s=1, max_delay_s=30, jitter=0)
    waits: list[float] = []
    outcomes: list[Exception | None] = [_SlowDown(7), _Wrong(), None]

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def operation() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    await policy.call(operation, retry_on=lambda e: isinstance(e, Exception), sleep=record)
    assert waits == [7, 2]


def test_call_blocking_retries_like_call_and_stops_where_it_does() -> None:
    """`call_blocking`: the waits of `call`, the first try counted; a terminal error and
    the last attempt end it with their error."""
    policy = RetryPolicy(initial_delay_s=1, multiplier=3, max_delay_s=100, jitter=0, max_attempts=3)
    waits: list[float] = []
    outcomes: list[Exception | None] = [_Busy(), _Busy(), None]

    def operation() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "done"

    assert policy.call_blocking(operation, sleep=waits.append) == "done"
    assert waits == [1, 3]

    calls: list[type[Exception]] = []

    def failing(error: type[Exception]) -> Callable[[], None]:
        def operation() -> None:
            calls.append(error)
            raise error()

        return operation

    with pytest.raises(_Busy):
        policy.call_blocking(failing(_Busy), sleep=waits.append)
    with pytest.raises(_Wrong):
        policy.call_blocking(failing(_Wrong), sleep=waits.append)
    assert calls == [_Busy, _Busy, _Busy, _Wrong]
