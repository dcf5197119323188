"""Writing transitions: the store write carries its events (outbox); publishing follows at once.

The store write is the commit point. Events are then published straight away and marked
published; if the process dies in between, `OutboxRelay` publishes them later. Consumers see
each event at least once and drop copies by version (every handler is a conditional write).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

from stoker.aio import stop_requested
from stoker.core.clock import Clock
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord
from stoker.lifecycle.outbox_events import status_changed
from stoker.ports.bus import Publisher
from stoker.ports.store import JobStore, OutboxEntry

log = structlog.get_logger("stoker.lifecycle")


class Transitioner:
    """Create and move jobs with their events, for every service."""

    def __init__(
        self, store: JobStore, publisher: Publisher, *, store_delivers_outbox: bool = False
    ) -> None:
        """`store_delivers_outbox`: the store's outbox items reach consumers by themselves
        (DynamoDB Streams mode: the table's stream is the bus), so they are only marked."""
        self.store = store
        self._publisher = publisher
        self._store_delivers = store_delivers_outbox

    async def create(
        self, job: JobRecord, extra: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        outbox = status_changed(None, job, "submitted") + list(extra)
        stored, created = await self.store.create(job, outbox=outbox)
        if created:
            log.info("job created", job_id=job.job_id, owner=job.owner)
            await self._publish(outbox)
        return stored, created

    async def move(
        self, job: JobRecord, change: JobChange, extra: Sequence[tuple[str, CloudEvent]] = ()
    ) -> JobRecord:
        """Apply `change` to `job` if nobody moved it since it was read (VersionConflict else)."""
        after = change.apply(job)
        outbox = status_changed(job, after, change.reason) + list(extra)
        stored = await self.store.transition(
            job.job_id, change, expected_version=job.version, outbox=outbox, current=job
        )
        log.info(
            "job transition",
            job_id=job.job_id,
            from_status=job.status.value,
            to_status=stored.status.value,
            version=stored.version,
            attempt=stored.attempt,
            reason=change.reason,
        )
        await self._publish(outbox)
        return stored

    async def publish_extra(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Publish events that are not part of a transition (they can be derived again)."""
        for topic, event in events:
            await self._publisher.publish(topic, event)

    async def _publish(self, outbox: Sequence[tuple[str, CloudEvent]]) -> None:
        try:
            if not self._store_delivers:
                for topic, event in outbox:
                    await self._publisher.publish(topic, event)
            await self.store.mark_published([event.id for _, event in outbox])
        except Exception as exc:  # the relay will publish them; the write already happened
            log.warning("publish after write failed; relay will retry", error=str(exc))


class OutboxRelay:
    """Publishes outbox events whose writer died before publishing them."""

    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        clock: Clock,
        *,
        grace: timedelta = timedelta(seconds=2),
        interval_s: float = 0.5,
        batch: int = 200,
        store_delivers_outbox: bool = False,
    ) -> None:
        self._store_delivers = store_delivers_outbox
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._grace = grace
        self._interval_s = interval_s
        self._batch = batch

    async def run_once(self) -> int:
        """Publish overdue entries; returns how many."""
        cutoff = self._clock.now() - self._grace
        entries: list[OutboxEntry] = [
            e for e in await self._store.pending_outbox(self._batch) if e.event.time <= cutoff
        ]
        for entry in entries if not self._store_delivers else []:
            await self._publisher.publish(entry.topic, entry.event)
        if entries:
            await self._store.mark_published([e.entry_id for e in entries])
            log.info("outbox relay published", count=len(entries))
        return len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("outbox relay pass failed", error=str(exc))
            if await stop_requested(stop, self._interval_s):
                return
