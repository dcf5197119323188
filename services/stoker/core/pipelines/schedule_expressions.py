"""Schedule expressions as EventBridge Scheduler (and so the SDK's `PipelineSchedule`)
writes them, all in UTC:

- `cron(minutes hours day-of-month month day-of-week year)`: six fields with AWS's rules
  (`?` in one of the two day fields, `L`, `W`, `#`, `SUN-SAT` as 1-7), read and evaluated by
  the `aws-croniter` library;
- `rate(n minutes|hours|days)` (singular for 1): ticks at the start date and every n units
  after it;
- `at(yyyy-mm-ddThh:mm:ss)`: one tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aws_croniter import AwsCroniter

_WRAPPED = re.compile(r"(cron|rate|at)\((.*)\)", re.DOTALL)
_RATE = re.compile(r"(\d+)\s+(minute|minutes|hour|hours|day|days)")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class Cron:
    fields: str
    _croniter: AwsCroniter

    def next_after(self, after: datetime) -> datetime | None:
        found: list[datetime | None] = self._croniter.get_next(_utc(after), n=1, inclusive=False)
        return found[0] if found else None

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        found: list[datetime | None] = self._croniter.get_prev(_utc(when), n=1, inclusive=True)
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Rate:
    every: timedelta
    anchor: datetime
    """The first tick: the schedule's start date, or one interval after its creation."""

    def next_after(self, after: datetime) -> datetime | None:
        if after < self.anchor:
            return self.anchor
        periods = (after - self.anchor) // self.every + 1
        return self.anchor + periods * self.every

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        if when < self.anchor:
            return None
        return self.anchor + ((when - self.anchor) // self.every) * self.every


@dataclass(frozen=True, slots=True)
class At:
    moment: datetime

    def next_after(self, after: datetime) -> datetime | None:
        return self.moment if after < self.moment else None

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        return self.moment if self.moment <= when else None


Expression = Cron | Rate | At


def parse_expression(text: str, *, start_date: datetime | None, created_at: datetime) -> Expression:
    """The expression `text` stands for; ValueError saying what is wrong otherwise."""
    match = _WRAPPED.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not cron(...), rate(...) or at(...)")
    kind, body = match.group(1), match.group(2).strip()
    if kind == "cron":
        try:
            return Cron(body, AwsCroniter(body))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from exc
    if kind == "rate":
        rate = _RATE.fullmatch(body)
        if rate is None or int(rate.group(1)) < 1:
            raise ValueError(f"{text!r}: expected rate(<n >= 1> minutes|hours|days)")
        every = int(rate.group(1)) * _UNITS[rate.group(2).rstrip("s")]
        anchor = _utc(start_date) if start_date is not None else _utc(created_at) + every
        return Rate(every, anchor)
    try:
        moment = datetime.strptime(body, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r}: expected at(yyyy-mm-ddThh:mm:ss)") from exc
    return At(moment)


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no time zone; schedules work in UTC")
    return when.astimezone(UTC)
