"""What a slot claim does, decided from the slots the jobs hold now: pure, shared by every
store.

A store reads the type's count and the claimed jobs' slots, asks `plan_claims` what to
write, and writes the plan with its own primitive: the memory store into its dictionary,
SQLite inside the same transaction as the read, DynamoDB in one transaction whose conditions
say that the count and each slot are still as read (`SlotWrite.seen`).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from stoker.ports.capacity import HeldSlot, SlotClaim, SlotsClaimed


class ClaimStep(enum.Enum):
    NEW = "new"
    """The job holds no slot: a free one is taken, if there is room."""
    MOVE = "move"
    """The job holds a slot for an earlier attempt (which has ended): it moves to this one."""
    MINE = "mine"
    """Held for this attempt by the claimer or by a dead process: the claimer's now."""
    ELSEWHERE = "elsewhere"
    """Held for this or a later attempt by another process."""


def claim_step(
    held: HeldSlot | None, claim: SlotClaim, owner: str, take_from: Collection[str]
) -> ClaimStep:
    if held is None:
        return ClaimStep.NEW
    if held.attempt < claim.attempt:
        return ClaimStep.MOVE
    if held.attempt == claim.attempt and (held.owner == owner or held.owner in take_from):
        return ClaimStep.MINE
    return ClaimStep.ELSEWHERE


@dataclass(frozen=True, slots=True)
class SlotWrite:
    """One slot a claim writes: `slot` as it is to be stored, `seen` as it was read (None: the
    job held no slot, so the write adds one to the type's count)."""

    slot: HeldSlot
    seen: HeldSlot | None


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """What a claim writes (one write per job, in claim order) and what it answers."""

    writes: list[SlotWrite] = field(default_factory=list)
    result: SlotsClaimed = field(default_factory=SlotsClaimed)

    @property
    def added(self) -> int:
        """Slots the claim adds to the type's count."""
        return sum(1 for write in self.writes if write.seen is None)


def plan_claims(
    instance_type: str,
    cap: int,
    claims: Sequence[SlotClaim],
    held: Mapping[str, HeldSlot],
    *,
    in_use: int,
    owner: str,
    at: datetime,
    take_from: Collection[str] = (),
) -> ClaimPlan:
    """The claims of `claims`, in order, against the slots `held` (by job id: at least the
    claimed jobs' slots) while `in_use` of `cap` slots of `instance_type` are taken. A job
    claimed twice sees its first claim. A slot that moves keeps its instance type."""
    planned: dict[str, SlotWrite] = {}
    claimed: list[str] = []
    elsewhere: dict[str, str] = {}
    for claim in claims:
        write = planned.get(claim.job_id)
        current = write.slot if write is not None else held.get(claim.job_id)
        step = claim_step(current, claim, owner, take_from)
        if step is ClaimStep.ELSEWHERE:
            assert current is not None
            elsewhere[claim.job_id] = current.owner
            continue
        if step is ClaimStep.NEW:
            if in_use >= cap:
                continue
            in_use += 1
        kind = instance_type if current is None else current.instance_type
        seen = write.seen if write is not None else current
        slot = HeldSlot(kind, claim.job_id, claim.attempt, owner, at)
        planned[claim.job_id] = SlotWrite(slot, seen)
        claimed.append(claim.job_id)
    return ClaimPlan(list(planned.values()), SlotsClaimed(claimed, elsewhere, in_use))


def frees(held: HeldSlot, release: SlotClaim) -> bool:
    """Whether a release frees the slot: it is held for at most the released attempt."""
    return held.attempt <= release.attempt


def check_claim(instance_type: str, cap: int) -> None:
    if not instance_type:
        raise ValueError("instance_type must not be empty")
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")


def check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
