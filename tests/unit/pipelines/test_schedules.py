"""Schedules: next ticks for cron/rate/at in UTC, the start date, pause, the overlap rule and
missed ticks after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.core.pipelines.schedules import (
    Schedule,
    SkippedTick,
    SkipReason,
    decide,
    tick_execution_id,
)

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)  # a Saturday


def schedule(expression: str, **fields: Any) -> Schedule:
    return Schedule(
        name="nightly", pipeline_name="demo", expression=expression, created_at=T0, **fields
    )


def test_cron_ticks_follow_aws_fields_in_utc() -> None:
    weekdays = schedule("cron(0/15 9 ? * MON-FRI *)")
    first = weekdays.next_tick_after(T0)
    assert first == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Monday
    assert weekdays.next_tick_after(first) == datetime(2026, 12, 7, 9, 15, tzinfo=UTC)
    third_friday = schedule("cron(0 10 ? * 6#3 *)")
    assert third_friday.next_tick_after(T0) == datetime(2026, 12, 18, 10, 0, tzinfo=UTC)
    last_day = schedule("cron(30 23 L * ? *)")
    assert last_day.next_tick_after(T0) == datetime(2026, 12, 31, 23, 30, tzinfo=UTC)


def test_rate_ticks_from_the_start_date_or_one_interval_after_creation() -> None:
    assert schedule("rate(2 hours)").next_tick_after(T0) == T0 + timedelta(hours=2)
    start = T0 + timedelta(days=1)
    from_start = schedule("rate(1 day)", start_date=start)
    assert from_start.next_tick_after(T0) == start
    assert from_start.next_tick_after(start) == start + timedelta(days=1)
    assert schedule("rate(1 minute)").next_tick_after(T0) == T0 + timedelta(minutes=1)


def test_at_ticks_once() -> None:
    once = schedule("at(2026-12-24T18:00:00)")
    moment = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    assert once.next_tick_after(T0) == moment
    assert once.next_tick_after(moment) is None


def test_no_tick_before_the_start_date() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    daily = schedule("cron(0 9 * * ? *)", start_date=start)
    assert daily.next_tick_after(T0) == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    midnight = schedule("cron(0 0 * * ? *)", start_date=start)
    assert midnight.next_tick_after(T0) == start  # a tick at the start date itself counts


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 9 * * * *)", "One must be a question mark"),
        ("cron(0 9 * * ?)", "6 required"),
        ("cron(61 9 * * ? *)", "Invalid minute"),
        ("rate(0 minutes)", "expected rate("),
        ("rate(5 weeks)", "expected rate("),
        ("at(2026-12-24 18:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
        ("every day", "is not cron(...), rate(...) or at(...)"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(expression: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        schedule(expression)


def test_a_due_tick_starts_one_execution_and_the_next_is_planned() -> None:
    hourly = schedule("rate(1 hour)")
    tick = T0 + timedelta(hours=1)
    early = decide(hourly, last_tick=None, now=tick - timedelta(seconds=1), previous_running=False)
    assert early.start == ()
    assert early.next_tick == tick
    on_time = decide(hourly, last_tick=None, now=tick, previous_running=False)
    assert on_time.start == (tick,)
    assert on_time.last_tick == tick
    assert on_time.next_tick == tick + timedelta(hours=1)
    again = decide(
        hourly, last_tick=on_time.last_tick, now=tick + timedelta(minutes=5), previous_running=False
    )
    assert again.start == ()


def test_a_tick_while_the_previous_execution_runs_is_skipped_unless_overlap_is_allowed() -> None:
    tick = T0 + timedelta(hours=1)
    skipped = decide(schedule("rate(1 hour)"), last_tick=None, now=tick, previous_running=True)
    assert skipped.start == ()
    assert skipped.skipped == (SkippedTick(tick, SkipReason.OVERLAP),)
    assert skipped.last_tick == tick  # not queued: the tick is over
    allowed = decide(
        schedule("rate(1 hour)", allow_overlap=True),
        last_tick=None,
        now=tick,
        previous_running=True,
    )
    assert allowed.start == (tick,)


def test_missed_ticks_are_not_caught_up_after_downtime() -> None:
    """A week without a scheduler: only the latest tick fires, the rest are reported."""
    every_minute = schedule("cron(* * * * ? *)")
    last = T0
    now = T0 + timedelta(days=7, seconds=30)
    decision = decide(every_minute, last_tick=last, now=now, previous_running=False)
    latest = T0 + timedelta(days=7)
    assert decision.start == (latest,)
    assert decision.skipped == (
        SkippedTick(T0 + timedelta(minutes=1), SkipReason.MISSED, latest - timedelta(minutes=1)),
    )
    assert decision.next_tick == latest + timedelta(minutes=1)


def test_catch_up_fires_missed_ticks_one_after_another() -> None:
    hourly = schedule("rate(1 hour)", catch_up=True)
    now = T0 + timedelta(hours=3, minutes=10)
    ticks = [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    first = decide(hourly, last_tick=None, now=now, previous_running=False)
    assert first.start == (ticks[0],)
    assert first.next_tick == ticks[1]  # already due: decide again when the run ends
    waiting = decide(hourly, last_tick=first.last_tick, now=now, previous_running=True)
    assert waiting.start == ()
    assert waiting.skipped == ()
    assert waiting.last_tick == ticks[0]
    second = decide(hourly, last_tick=first.last_tick, now=now, previous_running=False)
    assert second.start == (ticks[1],)
    together = decide(
        schedule("rate(1 hour)", catch_up=True, allow_overlap=True),
        last_tick=None,
        now=now,
        previous_running=True,
    )
    assert together.start == tuple(ticks)


def test_a_paused_schedule_starts_nothing_and_consumes_its_ticks() -> None:
    hourly = schedule("rate(1 hour)", enabled=False)
    now = T0 + timedelta(hours=5)
    paused = decide(hourly, last_tick=None, now=now, previous_running=False)
    assert paused.start == ()
    assert paused.next_tick is None
    resumed = decide(
        schedule("rate(1 hour)"),
        last_tick=paused.last_tick,
        now=now + timedelta(minutes=1),
        previous_running=False,
    )
    assert resumed.start == ()
    assert resumed.next_tick == T0 + timedelta(hours=6)


def test_a_tick_names_the_same_execution_for_every_scheduler() -> None:
    tick = T0 + timedelta(hours=1)
    assert tick_execution_id("nightly", tick) == tick_execution_id("nightly", tick)
    assert tick_execution_id("nightly", tick) != tick_execution_id(
        "nightly", tick + timedelta(hours=1)
    )
    assert tick_execution_id("nightly", tick) != tick_execution_id("weekly", tick)


EXPRESSIONS = st.sampled_from(
    [
        "cron(0/5 * * * ? *)",
        "cron(15 3 ? * MON-FRI *)",
        "cron(0 12 L * ? *)",
        "cron(30 6 1,15 * ? *)",
        "rate(7 minutes)",
        "rate(3 hours)",
        "rate(1 day)",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    expression=EXPRESSIONS,
    start_offset_min=st.integers(min_value=-600, max_value=6000),
    probe_offset_min=st.integers(min_value=0, max_value=20_000),
)
def test_next_tick_is_strictly_later_and_never_before_the_start_date(
    expression: str, start_offset_min: int, probe_offset_min: int
) -> None:
    start = T0 + timedelta(minutes=start_offset_min)
    sched = schedule(expression, start_date=start)
    probe = T0 + timedelta(minutes=probe_offset_min)
    tick = sched.next_tick_after(probe)
    assert tick is not None
    assert tick > probe
    assert tick >= start
    following = sched.next_tick_after(tick)
    assert following is not None
    assert following > tick


@settings(max_examples=40, deadline=None)
@given(
    expression=EXPRESSIONS,
    steps_min=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=25),
    catch_up=st.booleans(),
)
def test_every_tick_starts_at_most_once_and_only_when_due(
    expression: str, steps_min: list[int], catch_up: bool
) -> None:
    """Deciding at any sequence of times, each tick is started at most once, never before it
    is due, and in order."""
    sched = schedule(expression, catch_up=catch_up)
    now, last = T0, None
    started: list[datetime] = []
    for step in steps_min:
        now += timedelta(minutes=step)
        decision = decide(sched, last_tick=last, now=now, previous_running=False)
        assert all(tick <= now for tick in decision.start)
        started += decision.start
        last = decision.last_tick
    assert started == sorted(set(started))
