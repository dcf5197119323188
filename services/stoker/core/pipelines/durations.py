"""ISO 8601 durations, as a step's `CacheConfig.ExpireAfter` gives them (`P30D`, `PT1H`,
`P4DT12H`). The SDK's own examples also write them in lower case and without the leading
`P` (`p30d`, `T12H`), so both are read. A month counts 30 days and a year 365: the cache
only needs an age limit, not calendar arithmetic."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"P?(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta:
    """The duration `text` stands for; ValueError naming it when it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P30D or PT12H")
    parts = {key: float(value) for key, value in match.groupdict().items() if value}
    days = parts.get("years", 0) * 365 + parts.get("months", 0) * 30 + parts.get("days", 0)
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=days,
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )
