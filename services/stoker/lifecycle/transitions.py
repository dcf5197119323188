"""Writing transitions: the store write carries its events (outbox); publishing follows at once.

The store write is the commit point: `create` and `move` return once it is done. Their
events are handed to one publishing task per Transitioner, which publishes whatever has
gathered (one `publish_many` per topic, in write order, so a job's events stay in order) and
then marks the lot published in one store call. If the process dies first, `OutboxRelay`
publishes them later. Consumers see each event at least once and drop copies by version
(every handler is a conditional write).

Waiting for the broker's acknowledgement and for the mark inside every transition made each
one cost three round trips instead of one, and the store and broker calls of a busy
pipeline queued behind each other (ADR 0007). `flush` waits for what was handed over.
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
        self._unpublished: list[tuple[str, CloudEvent]] = []
        self._publishing: asyncio.Task[None] | None = None

    async def create(
        self, job: JobRecord, extra: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        outbox = status_changed(None, job, "submitted") + list(extra)
        stored, created = await self.store.create(job, outbox=outbox)
        if created:
            log.info("job created", job_id=job.job_id, owner=job.owner)
            self._hand_over(outbox)
        return stored, created

    async def move(
        self, job: JobRecord, change: JobChange, extra: Sequence[tuple[str, CloudEvent]] = ()
    ) -> JobRecord:
        """Apply `change` to `job` if nobody moved it since it was read (VersionConflict else).
        `extra`: more outbox events, committed and published with the change."""
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
        self._hand_over(outbox)
        return stored

    async def publish_extra(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Publish events that are not part of a transition (they can be derived again)."""
        for topic, event in events:
            await self._publisher.publish(topic, event)

    async def flush(self) -> None:
        """Wait until every event handed over so far is published and marked (or failed,
        leaving it to the relay)."""
        while self._publishing is not None and not self._publishing.done():
            await asyncio.shield(self._publishing)

    def _hand_over(self, outbox: Sequence[tuple[str, CloudEvent]]) -> None:
        self._unpublished.extend(outbox)
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.get_running_loop().create_task(
                self._publish_handed_over(), name="stoker-outbox-publish"
            )

    async def _publish_handed_over(self) -> None:
        while self._unpublished:
            batch, self._unpublished = self._unpublished, []
            await self._publish(batch)

    async def _publish(self, outbox: Sequence[tuple[str, CloudEvent]]) -> None:
        by_topic: dict[str, list[CloudEvent]] = {}
        for topic, event in outbox:
            by_topic.setdefault(topic, []).append(event)
        try:
            if not self._store_delivers:
                await asyncio.gather(
                    *(self._publisher.publish_many(t, events) for t, events in by_topic.items())
                )
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
