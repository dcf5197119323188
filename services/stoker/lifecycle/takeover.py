"""What a launcher picks up from the store rather than from events (ADR 0024).

After a (re)start, and whenever a peer launcher stops renewing its lease, a launcher resumes
the launches left half done in Launching and offers the New jobs the store holds (the dead
launcher may have had them queued). Retries that came due are drained by a timer and shared
between the live launchers by rendezvous hashing (`Peers.mine`), so each is offered once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from stoker.core.clock import Clock
from stoker.core.job import JobRecord, JobStatus
from stoker.core.waiting import stop_requested
from stoker.lifecycle.admission import AdmissionControl, Admitted
from stoker.lifecycle.attempts import launch_instance_type
from stoker.lifecycle.capacity import Peers
from stoker.lifecycle.shared_slots import SharedSlots, SlotStore
from stoker.ports.store import all_jobs

log = structlog.get_logger("stoker.launcher")

DUE_BATCH = 500
"""Due retries read from the store in one pass."""


class Takeover:
    """Recovery, peer takeover and due retries for one launcher.

    known: the launcher's jobs as last read, until they launch (shared with it). launch:
    starts the launch of an admitted job of an uncapped type. shared: whether any type is
    capped (the slots are then counted in the store).
    """

    def __init__(
        self,
        store: SlotStore,
        admission: AdmissionControl,
        slots: SharedSlots,
        peers: Peers,
        clock: Clock,
        *,
        known: dict[str, JobRecord],
        launch: Callable[[Admitted], object],
        shared: bool,
        due_poll_interval_s: float,
    ) -> None:
        self._store = store
        self._admission = admission
        self._slots = slots
        self._peers = peers
        self._clock = clock
        self._known = known
        self._launch = launch
        self._shared = shared
        self._due_poll_interval_s = due_poll_interval_s

    async def recover(self) -> None:
        """Resume and queue what the store holds: launches left in Launching, New jobs, due
        retries. Jobs of capped types claim their slots in the store first (a slot a dead
        launcher held for the same attempt is taken over, one a live launcher holds means
        that launcher has the job in hand)."""
        # Running jobs need no look: a capped type's slots are counted in the store, and an
        # uncapped type counts nothing.
        async for job in all_jobs(self._store, JobStatus.LAUNCHING):
            instance_type = launch_instance_type(job)
            # Resumed through the launcher's launch, so a store failure re-queues it too.
            self._known[job.job_id] = job
            admitted = Admitted(job.job_id, instance_type, job.priority)
            self._admission.occupy(job.job_id, instance_type)
            if self._slots.capped(instance_type):
                self._slots.claim(admitted)
            else:
                self._launch(admitted)
        async for job in all_jobs(self._store, JobStatus.NEW):
            self._admission.offer(job.job_id, launch_instance_type(job), job.priority)
        if self._shared:
            await self._slots.reconcile()
        await self.due_pass()

    async def run_peers(self, stop: asyncio.Event) -> None:
        """Renew the lease every `heartbeat_interval_s` until `stop`, and take over the share
        of each launcher whose lease expired: `recover` again, which resumes the launches it
        left half done and offers the New jobs it had queued (a job that a live launcher has
        queued too is launched once: its slot claim, or its training job name and versioned
        write, let one of them through)."""
        while not stop.is_set():
            try:
                for dead in await self._peers.beat():
                    log.warning("a launcher stopped renewing its lease; taking over", dead=dead)
                    await self.recover()
                    await self._peers.taken_over(dead)
            except Exception as exc:
                log.warning("launcher heartbeat failed; next beat retries", error=str(exc))
            if await stop_requested(stop, self._peers.config.heartbeat_interval_s):
                return

    async def due_pass(self) -> int:
        """Offer every retry whose due time has come and is this launcher's (with peers,
        each due retry is one live launcher's); returns how many."""
        due = [
            job
            for job in await self._store.due(self._clock.now(), limit=DUE_BATCH)
            if self._peers.mine(job.job_id)
        ]
        for job in due:
            if self._shared:
                self._known[job.job_id] = job
                self._slots.note_read(job.job_id, launch_instance_type(job))
            self._admission.offer(job.job_id, launch_instance_type(job), job.priority)
        self._slots.admit()
        return len(due)

    async def run_due_timer(self, stop: asyncio.Event) -> None:
        """Run `due_pass` (and, with shared caps, re-read the counts of full types) every
        `due_poll_interval_s` until `stop`."""
        while not stop.is_set():
            try:
                await self.due_pass()
                if self._shared:
                    await self._slots.refresh()
            except Exception as exc:
                log.warning("due-retry pass failed", error=str(exc))
            if await stop_requested(stop, self._due_poll_interval_s):
                return
