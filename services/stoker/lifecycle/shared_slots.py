"""The launcher's side of caps shared through the job store (ADR 0024).

A job admitted for a capped instance type launches only after its slot is claimed in the
store, in batches per type (one claim for every job admitted at once). Ends free slots in
batches too. The local `AdmissionControl` stays the queue (priority, then first come) and
keeps the store's count of slots in use, refreshed by every claim and, while jobs wait on a
full type, every `due_poll_interval_s`, so a slot another launcher frees is seen in time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from stoker.core.clock import Clock
from stoker.core.job import JobRecord
from stoker.lifecycle.admission import AdmissionControl, Admitted
from stoker.lifecycle.capacity import (
    Peers,
    SlotUse,
    claim_attempt,
    owner_alive,
    slot_use,
)
from stoker.ports.capacity import CapacityStore, HeldSlot, SlotClaim
from stoker.ports.store import JobStore

log = structlog.get_logger("stoker.launcher")

CLAIM_BATCH = 64
"""Jobs claimed in one store call (one SQLite transaction, one DynamoDB transaction)."""
FRESH_READ_S = 1.0
"""A job read this recently is claimed as read; an older copy is read again first."""


class SlotStore(JobStore, CapacityStore, Protocol):
    """The store operations shared caps need."""


class SharedSlots:
    """Claims, frees and checks the store's slots for one launcher.

    launch: starts the launch of a job whose slot is claimed. failed: a job whose claim
    failed on the store (it is offered again later). spawn: runs a background task that the
    launcher's `drain` waits for.
    """

    def __init__(
        self,
        store: SlotStore,
        admission: AdmissionControl,
        peers: Peers,
        clock: Clock,
        *,
        known: dict[str, JobRecord],
        launch: Callable[[Admitted], object],
        failed: Callable[[Admitted, Exception], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._store = store
        self._admission = admission
        self._peers = peers
        self._clock = clock
        self._known = known
        self._launch = launch
        self._failed = failed
        self._spawn = spawn
        self._unclaimed: list[Admitted] = []
        self._claimer: asyncio.Task[None] | None = None
        self._releases: dict[str, int] = {}
        self._releaser: asyncio.Task[None] | None = None
        self._last_reconcile = clock.monotonic()
        self._read_at: dict[str, float] = {}

    def capped(self, instance_type: str) -> bool:
        return self._admission.cap(instance_type) is not None

    def note_read(self, job_id: str, instance_type: str) -> None:
        """The launcher just read the job (`known` holds it): a claim made soon uses it."""
        if self.capped(instance_type):
            self._read_at[job_id] = self._clock.monotonic()

    def claim(self, admitted: Admitted) -> None:
        """Claim the admitted job's slot, then launch it (in the background, batched)."""
        self._unclaimed.append(admitted)
        if self._claimer is None or self._claimer.done():
            self._claimer = self._spawn(self._claim_all())

    def release(self, job_id: str, attempt: int) -> None:
        """Free the job's slot, if it holds one for at most `attempt` (in the background,
        batched; retried while the store fails)."""
        self._releases[job_id] = max(attempt, self._releases.get(job_id, -1))
        if self._releaser is None or self._releaser.done():
            self._releaser = self._spawn(self._release_all())

    async def _claim_all(self) -> None:
        while self._unclaimed:
            batch, self._unclaimed = self._unclaimed, []
            by_type: dict[str, list[Admitted]] = defaultdict(list)
            for admitted in batch:
                by_type[admitted.instance_type].append(admitted)
            for instance_type, group in by_type.items():
                for start in range(0, len(group), CLAIM_BATCH):
                    await self._claim_group(instance_type, group[start : start + CLAIM_BATCH])

    async def _read(self, group: list[Admitted]) -> tuple[dict[str, JobRecord], list[Admitted]]:
        """The jobs of `group` as they are now, and the group less those that could not be
        read (they are offered again later).

        A job that waited in line here may have been launched (and even ended) by another
        launcher meanwhile, its end seen by that one only: it is read again. One read just
        now (most jobs: admitted as they came in) is used as it is; were it stale all the
        same, the launch would find the training job and the job's record moved on."""
        now = self._clock.monotonic()
        read: dict[str, JobRecord] = {}
        for admitted in group:
            read_at = self._read_at.pop(admitted.job_id, None)
            known = self._known.get(admitted.job_id)
            if known is not None and read_at is not None and now - read_at < FRESH_READ_S:
                read[admitted.job_id] = known
        stale = [a.job_id for a in group if a.job_id not in read]
        try:
            read.update(await self._store.get_many(stale) if stale else {})
        except Exception as exc:
            for admitted in group:
                if admitted.job_id in stale:
                    self._failed(admitted, exc)
            return read, [a for a in group if a.job_id not in stale]
        return read, group

    async def _claim_group(self, instance_type: str, group: list[Admitted]) -> None:
        read, group = await self._read(group)
        claims: list[SlotClaim] = []
        wanted: list[Admitted] = []
        for admitted in group:
            job = read.get(admitted.job_id)
            attempt = claim_attempt(job) if job is not None else None
            if job is None or attempt is None:  # gone, or launched or ended meanwhile
                self._admission.release(admitted.job_id)
                self._known.pop(admitted.job_id, None)
                continue
            self._known[admitted.job_id] = job
            claims.append(SlotClaim(admitted.job_id, attempt))
            wanted.append(admitted)
        if not claims:
            return
        cap = self._admission.cap(instance_type) or 0
        try:
            result = await self._store.claim_slots(
                instance_type,
                cap,
                claims,
                owner=self._peers.owner,
                at=self._clock.now(),
                take_from=self._peers.dead,
            )
        except Exception as exc:
            log.warning(
                "claiming slots failed; the jobs wait for the next try",
                instance_type=instance_type,
                jobs=len(wanted),
                error=str(exc),
            )
            for admitted in wanted:
                self._admission.requeue(admitted)
            return
        claimed = set(result.claimed)
        for admitted in wanted:
            if admitted.job_id in claimed:
                self._launch(admitted)
            elif admitted.job_id in result.held_elsewhere:
                # Another live launcher has this attempt in hand: it launches it.
                self._admission.release(admitted.job_id)
                self._known.pop(admitted.job_id, None)
            else:
                self._admission.requeue(admitted)
        self._admission.sync(instance_type, result.in_use)

    async def _release_all(self) -> None:
        failures = 0
        while self._releases:
            batch, self._releases = self._releases, {}
            try:
                await self._store.release_slots([SlotClaim(j, a) for j, a in batch.items()])
            except Exception as exc:
                for job_id, attempt in batch.items():
                    self._releases[job_id] = max(attempt, self._releases.get(job_id, -1))
                failures += 1
                log.warning("freeing slots failed; retrying", slots=len(batch), error=str(exc))
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            await self.refresh(force=True)

    async def refresh(self, *, force: bool = False) -> None:
        """Read the count of each capped type that has jobs waiting and looks full here, so
        slots freed by other launchers are used; then admit. Every `reconcile_interval_s`,
        also look for slots nobody uses on those types."""
        full = [
            t
            for t in self._admission.waiting_types()
            if self.capped(t)
            and (force or self._admission.in_use(t) >= (self._admission.cap(t) or 0))
        ]
        if not full:
            return
        now = self._clock.monotonic()
        if now - self._last_reconcile >= self._peers.config.reconcile_interval_s:
            self._last_reconcile = now
            for instance_type in full:
                await self.reconcile(instance_type)
        for instance_type in full:
            cap = self._admission.cap(instance_type) or 0
            counted = await self._store.claim_slots(
                instance_type, cap, [], owner=self._peers.owner, at=self._clock.now()
            )
            self._admission.sync(instance_type, counted.in_use)
        self.admit()

    def admit(self) -> None:
        """Hand every job that fits now to its launch (uncapped) or to a claim (capped)."""
        for admitted in self._admission.admit():
            if self.capped(admitted.instance_type):
                self.claim(admitted)
            else:
                self._launch(admitted)

    async def reconcile(self, instance_type: str | None = None) -> int:
        """Free the slots nobody uses (their job ended or moved on, and the release was lost
        with a killed process), and resume the launches dead launchers left half done.
        Returns how many slots were freed."""
        held = await self._store.held_slots(instance_type)
        if not held:
            return 0
        jobs = await self._store.get_many([slot.job_id for slot in held])
        now = self._clock.now()
        ttl_s = self._peers.config.lease_ttl_s
        stale: list[SlotClaim] = []
        for slot in held:
            job = jobs.get(slot.job_id)
            use = slot_use(slot, job)
            if use is SlotUse.STALE:
                stale.append(SlotClaim(slot.job_id, slot.attempt))
            elif use is SlotUse.CLAIMING and not owner_alive(slot, self._peers.live, now, ttl_s):
                assert job is not None
                self._resume(slot, job)
        freed = await self._store.release_slots(stale) if stale else 0
        if freed:
            log.info(
                "freed slots nobody used",
                slots=freed,
                instance_type=instance_type,
                jobs=[claim.job_id for claim in stale[:10]],
            )
        return freed

    def _resume(self, slot: HeldSlot, job: JobRecord) -> None:
        """A launch a dead launcher claimed a slot for and did not finish: claimed again
        (the slot changes owner, no new one) and launched; its training job name finds the
        training job if the dead launcher created it."""
        self._peers.dead.add(slot.owner)
        self._known[job.job_id] = job
        self._admission.occupy(job.job_id, slot.instance_type)
        self.claim(Admitted(job.job_id, slot.instance_type, job.priority))
        log.info("resuming a launch a dead launcher left", job_id=job.job_id, owner=slot.owner)
