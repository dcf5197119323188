"""What several launchers share through the job store: who is alive, whose work is whose,
and whether a slot is still in use (ADR 0024).

Each launcher renews a lease `launcher/<owner>` every `heartbeat_interval_s`; a lease that
expired is a dead launcher's, and the first peer to take it over resumes that launcher's
half-done launches. Due retries are shared by rendezvous hashing over the live launchers,
so each is offered by one of them. Pure but for `Peers`, which talks to the store.
"""

from __future__ import annotations

import enum
import hashlib
import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from stoker.core.clock import Clock
from stoker.core.job import JobRecord, JobStatus
from stoker.ports.capacity import CapacityStore, HeldSlot

LEASE_PREFIX = "launcher/"
NO_LATER_ATTEMPT = 2**31 - 1
"""The attempt bound of a release that frees a job's slot whatever its attempt (an end)."""


@dataclass(frozen=True)
class PeerConfig:
    """heartbeat_interval_s: how often a launcher renews its lease and looks for dead peers.
    lease_ttl_s: how long a lease lasts unrenewed; a launcher silent this long is taken for
    dead and its share is taken over (so takeover happens within about this long). Host
    clocks must agree to well within it. reconcile_interval_s: how often a launcher with jobs
    waiting on a full instance type checks that type's slots for ones nobody uses any more
    (their release was lost with a killed process)."""

    heartbeat_interval_s: float = 1.0
    lease_ttl_s: float = 5.0
    reconcile_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.heartbeat_interval_s > 0:
            raise ValueError(f"heartbeat_interval_s must be > 0, got {self.heartbeat_interval_s}")
        if not self.lease_ttl_s >= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"lease_ttl_s ({self.lease_ttl_s}) must be at least twice "
                f"heartbeat_interval_s ({self.heartbeat_interval_s})"
            )
        if not self.reconcile_interval_s > 0:
            raise ValueError(f"reconcile_interval_s must be > 0, got {self.reconcile_interval_s}")


def new_owner() -> str:
    """This process's name in slots and leases: host, pid and a random part (a pid is
    reused after a restart; the new process must not pass for the dead one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_attempt(job: JobRecord) -> int | None:
    """The attempt a launch of `job` makes now: the one in flight for a Launching job, the
    next one for a New or RetryScheduled job; None when there is nothing to launch."""
    if job.status is JobStatus.LAUNCHING:
        return job.attempt
    if job.status in (JobStatus.NEW, JobStatus.RETRY_SCHEDULED):
        return job.attempt + 1
    return None


class SlotUse(enum.Enum):
    BOUND = "bound"
    """The job runs (Launched, InProgress, Stopping): its slot stays until it ends."""
    CLAIMING = "claiming"
    """A launch of the slot's attempt is under way (or was, if its launcher died)."""
    STALE = "stale"
    """The attempt ended or the job is gone: nobody uses the slot."""


def slot_use(slot: HeldSlot, job: JobRecord | None) -> SlotUse:
    if job is None or job.status.terminal:
        return SlotUse.STALE
    if job.status is JobStatus.LAUNCHING:
        return SlotUse.CLAIMING if job.attempt <= slot.attempt else SlotUse.STALE
    if job.status in (JobStatus.NEW, JobStatus.RETRY_SCHEDULED):
        return SlotUse.CLAIMING if slot.attempt > job.attempt else SlotUse.STALE
    return SlotUse.BOUND


def owner_alive(slot: HeldSlot, live: Collection[str], now: datetime, ttl_s: float) -> bool:
    """A slot's claimer counts as alive while its lease is live, and for a lease's length
    after the claim (a claimer that holds no lease, such as a Lambda invocation, or whose
    first lease is not written yet)."""
    return slot.owner in live or slot.claimed_at > now - timedelta(seconds=ttl_s)


def rendezvous_owner(job_id: str, owners: Collection[str]) -> str:
    """The owner a job's due retry belongs to: the highest hash of (owner, job), so when an
    owner leaves, only its own jobs move to others."""

    def score(owner: str) -> bytes:
        return hashlib.blake2b(f"{owner}\x00{job_id}".encode(), digest_size=8).digest()

    return max(owners, key=score)


class Peers:
    """This launcher's lease and its view of the other launchers, renewed by `beat`."""

    def __init__(self, store: CapacityStore, owner: str, clock: Clock, config: PeerConfig) -> None:
        self.owner = owner
        self.config = config
        self._store = store
        self._clock = clock
        self.live: frozenset[str] = frozenset()
        """Owners whose lease was live at the last beat (this one included once it beat)."""
        self.dead: set[str] = set()
        """Owners found dead: their slots may be taken over (`take_from` of a claim)."""

    @property
    def name(self) -> str:
        return LEASE_PREFIX + self.owner

    def mine(self, job_id: str) -> bool:
        """Whether this launcher offers the job's due retry. Before its first beat, or when it
        knows no peer, every job is its own."""
        if self.owner not in self.live or len(self.live) < 2:
            return True
        return rendezvous_owner(job_id, self.live) == self.owner

    async def beat(self) -> list[str]:
        """Renew this launcher's lease, refresh the live set, and take the leases of dead
        launchers; returns the owners this launcher must now take over (each dead launcher
        goes to one peer: the one whose conditional write took its lease)."""
        now = self._clock.now()
        ttl_s = self.config.lease_ttl_s
        await self._store.take_lease(self.name, self.owner, now=now, ttl_s=ttl_s)
        leases = await self._store.leases(LEASE_PREFIX)
        self.live = frozenset(
            {lease.owner for lease in leases if lease.expires_at > now} | {self.owner}
        )
        taken: list[str] = []
        for lease in leases:
            dead = lease.name[len(LEASE_PREFIX) :]
            if lease.expires_at > now or dead == self.owner:
                continue
            if await self._store.take_lease(lease.name, self.owner, now=now, ttl_s=ttl_s):
                self.dead.add(dead)
                taken.append(dead)
        return taken

    async def taken_over(self, dead: str) -> None:
        """The dead launcher's share is taken over: its lease goes."""
        await self._store.drop_lease(LEASE_PREFIX + dead, self.owner)
