"""Where each `ListTrainingJobs` pass of the monitor starts listing.

A pass lists the training jobs changed after some time. A change can reach a listing late:
SageMaker stamps it on its own clock, and its listing may lag the stamp. So windows overlap
by a look-back. When every pass overlapped the previous one by the whole look-back, each
changed job was listed look-back / interval times: 25 times at a 0.2 s interval and 5 s.

Now most passes overlap the previous one by one interval (at most the look-back), which
finds a change that is listed on time. At least every look-back a full pass lists from the
look-back before the previous full pass, so a change listed up to a look-back late is found
by the first full pass after it shows up, as before. When the interval is at least the
look-back (the default 60 s against 5 s), every pass is full and lists from the look-back
before the previous pass: the windows of before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIRST_PASS_REACH = timedelta(days=1)
"""How far back the first pass lists, before the look-back: a restarted monitor finds the
ends it missed while it was down."""


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    """List the jobs changed after this time."""
    full: bool
    """Whether this pass reaches back a whole look-back before the previous full pass."""


class ListingWindow:
    """The window of each pass, from the passes that listed before it."""

    def __init__(self, *, lookback: timedelta, interval: timedelta) -> None:
        if lookback < timedelta(0):
            raise ValueError(f"lookback must be >= 0, got {lookback}")
        if interval < timedelta(0):
            raise ValueError(f"interval must be >= 0, got {interval}")
        self._lookback = lookback
        self._overlap = min(interval, lookback)
        self._last_pass: datetime | None = None
        self._last_full: datetime | None = None

    def next(self, started: datetime) -> Window:
        """The window of a pass that starts at `started`."""
        if self._last_pass is None or self._last_full is None:
            return Window(started - FIRST_PASS_REACH - self._lookback, full=True)
        if started - self._last_full >= self._lookback:
            return Window(self._last_full - self._lookback, full=True)
        return Window(self._last_pass - self._overlap, full=False)

    def listed(self, started: datetime, window: Window) -> None:
        """The pass that started at `started` listed its `window`; a pass that failed is not
        reported, so the next one covers its window too."""
        self._last_pass = started
        if window.full:
            self._last_full = started
