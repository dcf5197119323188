"""Pipeline schedules: which ticks start an execution, decided without I/O.

A schedule runs its pipeline with the parameters' defaults at each tick of its expression,
never before its start date, and only while enabled. Two rules shape what happens to a tick:

- overlap: by default a tick that comes while the schedule's previous execution still runs
  is skipped (reported, not queued); `allow_overlap` starts it anyway;
- downtime: ticks missed while no scheduler ran are not caught up: only the latest one due
  fires, the older ones are reported as missed. `catch_up` fires each of them instead, one
  after another unless overlap is allowed (at most `MAX_CATCH_UP` per decision).

Ticks that fall while a schedule is paused are consumed: resuming starts from the resume
time. The scheduler stores `last_tick` with a conditional write, so of two schedulers
deciding the same tick only one starts its execution; the execution id is derived from the
tick as a second guard (`tick_execution_id`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from stoker.core.pipelines.schedule_expressions import Expression, parse_expression

MAX_CATCH_UP = 100


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of one pipeline.

    expression: cron(...), rate(...) or at(...), in UTC.
    start_date: no tick before it (None: from creation).
    enabled: False while paused.
    allow_overlap: start a tick even while the previous execution runs (default False).
    catch_up: after downtime, fire every missed tick rather than the latest (default False).
    """

    name: str
    pipeline_name: str
    expression: str
    created_at: datetime
    start_date: datetime | None = None
    enabled: bool = True
    allow_overlap: bool = False
    catch_up: bool = False

    def __post_init__(self) -> None:
        self.parsed()  # refuse a bad expression when the schedule is made

    def parsed(self) -> Expression:
        return parse_expression(
            self.expression, start_date=self.start_date, created_at=self.created_at
        )

    def next_tick_after(self, after: datetime) -> datetime | None:
        """The first tick strictly after `after` (and not before the start date)."""
        floor = self.start_date or self.created_at
        expression = self.parsed()
        probe = after if after >= floor else _just_before(floor)
        return expression.next_after(probe)


class SkipReason(StrEnum):
    OVERLAP = "overlap"
    """The previous execution still ran."""
    MISSED = "missed"
    """No scheduler ran at the time, and catch-up is off."""


@dataclass(frozen=True, slots=True)
class SkippedTick:
    tick: datetime
    reason: SkipReason
    through: datetime | None = None
    """For missed ticks: the last of the run of missed ticks that starts at `tick`."""


@dataclass(frozen=True, slots=True)
class TickDecision:
    start: tuple[datetime, ...]
    """Ticks to start one execution each, oldest first."""
    skipped: tuple[SkippedTick, ...]
    last_tick: datetime | None
    """The newest tick handled (started or skipped): store it."""
    next_tick: datetime | None
    """When to decide again (None: the schedule has no tick left)."""


def decide(
    schedule: Schedule, *, last_tick: datetime | None, now: datetime, previous_running: bool
) -> TickDecision:
    """What to do at `now` about the ticks after `last_tick` (None: none handled yet)."""
    if not schedule.enabled:
        return TickDecision((), (), max(last_tick or now, now), None)
    since = last_tick or _just_before(schedule.start_date or schedule.created_at)
    due = _due(schedule, since, now)
    if not due:
        return TickDecision((), (), last_tick, schedule.next_tick_after(max(since, now)))
    skipped: list[SkippedTick] = []
    if not schedule.catch_up:
        latest = due[-1]
        if len(due) > 1:
            through = schedule.parsed().latest_at_or_before(_just_before(latest))
            skipped.append(SkippedTick(due[0], SkipReason.MISSED, through))
        if previous_running and not schedule.allow_overlap:
            skipped.append(SkippedTick(latest, SkipReason.OVERLAP))
            start: tuple[datetime, ...] = ()
        else:
            start = (latest,)
        return TickDecision(start, tuple(skipped), latest, schedule.next_tick_after(now))
    if schedule.allow_overlap:
        handled = due[-1]
        return TickDecision(tuple(due), (), handled, schedule.next_tick_after(handled))
    if previous_running:
        # Caught-up ticks wait their turn: the next decision after the running execution
        # ends starts the oldest.
        return TickDecision((), (), last_tick, due[0])
    return TickDecision((due[0],), (), due[0], schedule.next_tick_after(due[0]))


def _due(schedule: Schedule, since: datetime, now: datetime) -> list[datetime]:
    """Ticks in (since, now], oldest first; for a schedule without catch-up only the two
    ends matter, so a week of downtime on a per-minute schedule costs two lookups."""
    first = schedule.next_tick_after(since)
    if first is None or first > now:
        return []
    if not schedule.catch_up:
        latest = schedule.parsed().latest_at_or_before(now)
        return [first] if latest is None or latest <= first else [first, latest]
    ticks = [first]
    while len(ticks) < MAX_CATCH_UP:
        following = schedule.next_tick_after(ticks[-1])
        if following is None or following > now:
            break
        ticks.append(following)
    return ticks


def _just_before(when: datetime) -> datetime:
    """An instant before `when` and after any tick earlier than it (ticks fall on whole
    seconds at the finest), so a tick at `when` itself counts as after it."""
    return when - _HALF_SECOND


_HALF_SECOND = timedelta(milliseconds=500)


def tick_execution_id(schedule_name: str, tick: datetime) -> str:
    """The execution id of a tick: the same for every scheduler that decides it."""
    digest = hashlib.sha256(f"{schedule_name}\n{tick.isoformat()}".encode()).hexdigest()
    return f"sched-{digest[:20]}"
