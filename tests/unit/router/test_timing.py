"""Request timing: stamps to Server-Timing phases and back."""

from __future__ import annotations

import pytest

from stoker.inference.router.timing import (
    PHASES,
    TOTAL,
    RequestTiming,
    parse_server_timing,
)


def complete() -> RequestTiming:
    return RequestTiming(
        received=10.000,
        handled=10.001,
        tokenized=10.0015,
        formed=10.002,
        run_started=10.0025,
        run_ended=10.0055,
        delivered=10.006,
        responded=10.0062,
    )


def test_phases_are_the_gaps_between_stamps_and_add_up_to_the_total() -> None:
    """Each phase is the time from one stamp to the next; their sum is `total`."""
    phases = complete().phases_ms()
    assert list(phases) == [*PHASES, TOTAL]
    assert phases["model"] == pytest.approx(3.0)
    assert phases["tok"] == pytest.approx(0.5)
    assert sum(phases[name] for name in PHASES) == pytest.approx(phases[TOTAL])
    assert phases[TOTAL] == pytest.approx(6.2)


def test_an_incomplete_timing_has_no_phases_and_no_header() -> None:
    """A request that did not reach every stage (refused, failed) reports nothing."""
    timing = complete()
    timing.run_started = 0.0
    assert timing.phases_ms() == {}
    assert timing.server_timing() == ""


def test_server_timing_header_parses_back() -> None:
    """The header value is W3C Server-Timing (`name;dur=ms`) and round-trips."""
    timing = complete()
    parsed = parse_server_timing(timing.server_timing())
    assert parsed == pytest.approx(timing.phases_ms(), abs=1e-3)


def test_parse_skips_entries_without_a_duration() -> None:
    """Other servers' entries (descriptions, no dur, bad numbers) are ignored."""
    parsed = parse_server_timing('cache;desc="hit", db;dur=5.5, x;dur=fast, miss')
    assert parsed == {"db": 5.5}
