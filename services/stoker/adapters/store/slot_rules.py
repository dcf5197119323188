"""What a slot claim does to one job, decided from the slot the job holds now (if any).

Shared by the stores that read a job's slot and write it in one step (memory, SQLite);
DynamoDB states the same rules as the conditions of its writes.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

from stoker.ports.capacity import HeldSlot, SlotClaim


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


def check_claim(instance_type: str, cap: int) -> None:
    if not instance_type:
        raise ValueError("instance_type must not be empty")
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")


def check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
