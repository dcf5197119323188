"""The storm policy, on a fake clock."""

from __future__ import annotations

import pytest

from stoker.core.clock import FakeClock
from stoker.notifier.digest import DigestPolicy


def test_first_item_of_a_quiet_period_goes_out_at_once() -> None:
    """Nothing recent for the key: the item is sent now and nothing is due."""
    policy: DigestPolicy[str] = DigestPolicy(FakeClock(), window_s=60)
    assert policy.offer("alice", "j1") is True
    assert policy.due() == []
    assert policy.held() == 0


def test_a_storm_collapses_into_one_digest_when_the_window_closes() -> None:
    """Jobs 2..50 within the window are held and come out together, once."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=60)
    assert policy.offer("alice", "j1")
    for n in range(2, 51):
        clock.advance(1)
        assert policy.offer("alice", f"j{n}") is False
    assert policy.due() == []  # window still open
    clock.advance(11)
    [digest] = policy.due()
    assert digest.key == "alice"
    assert digest.items == tuple(f"j{n}" for n in range(2, 51))
    assert policy.due() == []


def test_owners_are_independent() -> None:
    """A storm of one owner does not hold another owner's first job."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=60)
    assert policy.offer("alice", "a1")
    assert not policy.offer("alice", "a2")
    assert policy.offer("bob", "b1")


def test_a_quiet_window_ends_the_busy_period() -> None:
    """After a window passes with nothing held, the next job is sent at once again."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=60)
    assert policy.offer("alice", "j1")
    clock.advance(60)
    assert policy.due() == []
    assert policy.offer("alice", "j2") is True


def test_a_lasting_storm_gives_one_digest_per_window() -> None:
    """A digest opens the next window, so jobs right after it wait for the next digest."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=60)
    policy.offer("alice", "j1")
    clock.advance(30)
    policy.offer("alice", "j2")
    clock.advance(30)
    assert [d.items for d in policy.due()] == [("j2",)]
    clock.advance(5)
    assert policy.offer("alice", "j3") is False
    assert policy.next_deadline() == pytest.approx(120)
    clock.advance(55)
    assert [d.items for d in policy.due()] == [("j3",)]


def test_an_item_offered_after_the_close_but_before_due_joins_that_digest() -> None:
    """A closed window still holding items takes late arrivals into the same digest."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=10)
    policy.offer("alice", "j1")
    policy.offer("alice", "j2")
    clock.advance(15)
    assert policy.offer("alice", "j3") is False
    assert [d.items for d in policy.due()] == [("j2", "j3")]


def test_next_deadline_is_the_earliest_window_holding_items() -> None:
    """The flusher sleeps until the first digest is due, not longer."""
    clock = FakeClock()
    policy: DigestPolicy[str] = DigestPolicy(clock, window_s=60)
    policy.offer("alice", "a1")
    assert policy.next_deadline() is None  # nothing held yet
    clock.advance(10)
    policy.offer("bob", "b1")
    policy.offer("bob", "b2")
    policy.offer("alice", "a2")
    assert policy.next_deadline() == pytest.approx(60)


def test_a_zero_window_sends_everything_at_once() -> None:
    """window_s=0 turns digests off."""
    policy: DigestPolicy[str] = DigestPolicy(FakeClock(), window_s=0)
    assert all(policy.offer("alice", f"j{n}") for n in range(5))


def test_a_negative_window_is_refused() -> None:
    """The error names the bad value."""
    with pytest.raises(ValueError, match="-1"):
        DigestPolicy(FakeClock(), window_s=-1)
