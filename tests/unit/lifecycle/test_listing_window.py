"""Where the monitor's passes list from: one interval of overlap, and a full look-back at
least once per look-back period, so a listing that lags still shows every change. The
windows alone here; the monitor on a lagging listing below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stoker.core.job import JobStatus
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.listing_window import FIRST_PASS_REACH, ListingWindow
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.ports.training import TrainingJobStatus
from tests.unit.lifecycle.conftest import World, spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def _passes(window: ListingWindow, starts: list[float]) -> list[tuple[float, bool]]:
    """(since, full) of passes starting at `starts` (seconds after T0), each listing."""
    out = []
    for at in starts:
        started = T0 + at * S
        w = window.next(started)
        window.listed(started, w)
        out.append(((w.since - T0) / S, w.full))
    return out


def test_the_first_pass_reaches_a_day_and_a_look_back_back() -> None:
    window = ListingWindow(lookback=5 * S, interval=60 * S)
    first = window.next(T0)
    assert first.full
    assert first.since == T0 - FIRST_PASS_REACH - 5 * S


def test_with_an_interval_of_at_least_the_look_back_every_pass_overlaps_by_the_look_back() -> None:
    window = ListingWindow(lookback=5 * S, interval=60 * S)
    passes = _passes(window, [0, 61, 122.5, 184])
    assert passes[1:] == [(-5, True), (56, True), (117.5, True)]


def test_short_passes_overlap_one_interval_and_a_full_one_comes_every_look_back() -> None:
    window = ListingWindow(lookback=5 * S, interval=1 * S)
    passes = _passes(window, [0, 1, 2, 3, 4, 5, 6, 10, 11])
    assert passes[1:] == [
        (-1, False),  # one interval before the previous pass
        (0, False),
        (1, False),
        (2, False),
        (-5, True),  # a look-back after the last full pass: from the look-back before it
        (4, False),
        (0, True),
        (9, False),
    ]


def test_a_pass_that_failed_leaves_the_window_for_the_next() -> None:
    window = ListingWindow(lookback=5 * S, interval=1 * S)
    _passes(window, [0, 1])
    failed = window.next(T0 + 2 * S)  # its listing raised: not reported as listed
    retried = window.next(T0 + 3 * S)
    assert failed == retried
    assert (retried.since - T0) / S == 0


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="lookback"):
        ListingWindow(lookback=-S, interval=S)
    with pytest.raises(ValueError, match="interval"):
        ListingWindow(lookback=S, interval=-S)


JOBS = 20
INTERVAL_S = 0.2
LOOKBACK_S = 5.0


async def _followed_jobs(world: World) -> Monitor:
    """JOBS launched jobs and a monitor following them at a short interval."""
    for n in range(JOBS):
        await world.jobs.submit(parse_spec(spec(f"job-{n:02d}")))
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    config = MonitorConfig(
        poll_interval_s=INTERVAL_S, lookback_s=LOOKBACK_S, api_rate_per_s=1e6, api_burst=1e6
    )
    monitor = Monitor(world.transitioner, world.backend, world.clock, config, sleep=world.sleep)
    await monitor.recover()
    await monitor.poll_once()  # the first pass: every job still running
    return monitor


async def _end_one_per_pass_then_wait(world: World, monitor: Monitor, wait_s: float) -> None:
    """A job completes before each of the next JOBS passes; then passes go on for `wait_s`."""
    names = sorted(world.backend.jobs)
    for n in range(JOBS + round(wait_s / INTERVAL_S)):
        world.clock.advance(INTERVAL_S)
        if n < JOBS:
            world.backend.set_status(names[n], TrainingJobStatus.COMPLETED)
        await monitor.poll_once()


async def test_changes_listed_up_to_a_look_back_late_are_still_found(world: World) -> None:
    """The listing shows each end 3 s after its stamp, longer than the passes' overlap of one
    interval: full passes find them all."""
    world.backend.listing_lag_s = 3.0
    monitor = await _followed_jobs(world)
    await _end_one_per_pass_then_wait(world, monitor, wait_s=2 * LOOKBACK_S + 1)
    for n in range(JOBS):
        assert (await world.store.get(f"job-{n:02d}")).status is JobStatus.COMPLETED
    assert monitor.followed == 0


async def test_each_change_is_listed_a_few_times_not_once_a_pass_for_a_look_back(
    world: World,
) -> None:
    """At a 0.2 s interval and a 5 s look-back, overlapping every pass by the look-back listed
    each ended job about 25 times; one interval of overlap and a full pass every look-back
    list it about four times."""
    monitor = await _followed_jobs(world)
    listed_while_running = world.backend.listed_rows
    await _end_one_per_pass_then_wait(world, monitor, wait_s=2 * LOOKBACK_S + 1)
    assert monitor.followed == 0
    per_job = (world.backend.listed_rows - listed_while_running) / JOBS
    assert 1 <= per_job <= 5
