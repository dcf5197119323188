"""The slot-claim planner every store writes with: what a claim writes and answers, decided
from the slots read, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stoker.adapters.store.slot_rules import SlotWrite, frees, plan_claims
from stoker.ports.capacity import HeldSlot, SlotClaim

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)
GPU = "ml.p3.2xlarge"
CPU = "ml.m5.large"


def slot(job_id: str, attempt: int, owner: str, instance_type: str = GPU) -> HeldSlot:
    return HeldSlot(instance_type, job_id, attempt, owner, T0)


def test_new_slots_are_taken_in_order_until_the_cap() -> None:
    """Jobs without a slot take free ones in claim order; once `in_use` reaches the cap the
    rest find no room (neither claimed nor held elsewhere) and nothing is written for them."""
    plan = plan_claims(
        GPU,
        3,
        [SlotClaim("a", 1), SlotClaim("b", 1), SlotClaim("c", 1)],
        {},
        in_use=1,
        owner="L1",
        at=T1,
    )
    assert plan.result.claimed == ["a", "b"]
    assert plan.result.held_elsewhere == {}
    assert plan.result.in_use == 3
    assert plan.writes == [
        SlotWrite(HeldSlot(GPU, "a", 1, "L1", T1), None),
        SlotWrite(HeldSlot(GPU, "b", 1, "L1", T1), None),
    ]
    assert plan.added == 2


def test_a_slot_held_for_an_earlier_attempt_moves_without_a_new_slot() -> None:
    """A later attempt takes over the job's slot even at the cap: the count stays, the slot
    keeps its instance type, and the write remembers the slot as read."""
    held = {"a": slot("a", 1, "L0", CPU)}
    plan = plan_claims(GPU, 1, [SlotClaim("a", 2)], held, in_use=1, owner="L1", at=T1)
    assert plan.result.claimed == ["a"]
    assert plan.result.in_use == 1
    assert plan.writes == [SlotWrite(HeldSlot(CPU, "a", 2, "L1", T1), held["a"])]
    assert plan.added == 0


def test_the_same_attempt_is_mine_again_or_taken_from_the_dead_or_held_elsewhere() -> None:
    """Held for the claimed attempt: the claimer's own slot is claimed again, a dead owner's
    (in `take_from`) changes owner, a live other owner's is reported held elsewhere, as is a
    slot held for a later attempt."""
    held = {
        "own": slot("own", 1, "L1"),
        "dead": slot("dead", 1, "L9"),
        "live": slot("live", 1, "L2"),
        "later": slot("later", 3, "L1"),
    }
    claims = [SlotClaim(job_id, 1) for job_id in ("own", "dead", "live", "later")]
    plan = plan_claims(GPU, 4, claims, held, in_use=4, owner="L1", at=T1, take_from={"L9"})
    assert plan.result.claimed == ["own", "dead"]
    assert plan.result.held_elsewhere == {"live": "L2", "later": "L1"}
    assert plan.result.in_use == 4
    assert [(w.slot.owner, w.seen) for w in plan.writes] == [
        ("L1", held["own"]),
        ("L1", held["dead"]),
    ]


def test_a_job_claimed_twice_in_one_call_sees_its_first_claim() -> None:
    """The second claim of a job finds the slot the first one planned: one write, counted
    once, still new to the store."""
    plan = plan_claims(
        GPU, 5, [SlotClaim("a", 1), SlotClaim("a", 2)], {}, in_use=0, owner="L1", at=T1
    )
    assert plan.result.claimed == ["a", "a"]
    assert plan.result.in_use == 1
    assert plan.writes == [SlotWrite(HeldSlot(GPU, "a", 2, "L1", T1), None)]


def test_a_release_frees_slots_up_to_its_attempt() -> None:
    assert frees(slot("a", 2, "L1"), SlotClaim("a", 2))
    assert frees(slot("a", 2, "L1"), SlotClaim("a", 5))
    assert not frees(slot("a", 3, "L1"), SlotClaim("a", 2))
