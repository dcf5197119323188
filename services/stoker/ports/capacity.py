"""Shared capacity in the job store: per instance type slots and liveness leases.

Every launcher of a deployment counts against the same caps: a job's slot is an item in
the store, claimed with a conditional write before its training job is created and freed
when the attempt ends. A slot belongs to a job and its attempt, not to a process: when the
launcher that claimed it dies, the job keeps it. Leases say which processes are alive, so a
peer can take over what a dead one left half done (ADR 0024).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """A job's slot for one attempt (claimed for it, or freed up to it)."""

    job_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class HeldSlot:
    """A slot in use: whose job and attempt, which process claimed it and when."""

    instance_type: str
    job_id: str
    attempt: int
    owner: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class SlotsClaimed:
    """What a claim did. A job in neither `claimed` nor `held_elsewhere` found no room."""

    claimed: list[str] = field(default_factory=list)
    """Jobs that now hold a slot for the claimed attempt, owned by the claimer."""
    held_elsewhere: dict[str, str] = field(default_factory=dict)
    """Jobs whose slot another live process holds for this or a later attempt (by owner)."""
    in_use: int = 0
    """Slots of the instance type held after the claim, by every process."""


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: str
    expires_at: datetime


class CapacityStore(Protocol):
    async def claim_slots(
        self,
        instance_type: str,
        cap: int,
        claims: Sequence[SlotClaim],
        *,
        owner: str,
        at: datetime,
        take_from: Collection[str] = (),
    ) -> SlotsClaimed:
        """Claim a slot of `instance_type` for each job, in order, while fewer than `cap`
        are held; the rest find no room. Atomic per slot: concurrent claimers never hold
        more than `cap` between them. A job holds at most one slot:
        - held for an earlier attempt: the slot moves to this attempt and owner (no new one);
        - held for this attempt by `owner`, or by an owner in `take_from` (dead processes):
          it is `owner`'s now (no new one);
        - held for this or a later attempt by anyone else: `held_elsewhere`.
        With no claims, it only counts the slots in use."""

    async def release_slots(self, releases: Sequence[SlotClaim]) -> int:
        """Free each job's slot if it holds one for at most the given attempt; returns how
        many were freed. Freeing a slot that is not held is a no-op."""

    async def held_slots(self, instance_type: str | None = None) -> list[HeldSlot]:
        """Every slot in use (of `instance_type`, if given)."""

    async def take_lease(self, name: str, owner: str, *, now: datetime, ttl_s: float) -> bool:
        """Hold the lease `name` until `now + ttl_s`: taken when nobody holds it, when it
        expired, or renewed when `owner` holds it. False when another owner holds it."""

    async def leases(self, prefix: str) -> list[Lease]:
        """Every lease whose name starts with `prefix`, expired ones too."""

    async def drop_lease(self, name: str, owner: str) -> None:
        """Delete the lease if `owner` holds it; otherwise nothing."""
