"""Writing transitions: the store write carries its events (outbox); publishing follows at once.

The store write is the commit point: `create` and `move` return once it is done. Their
events are handed to one publishing task per Transitioner, which publishes whatever has
gathered (one `publish_many` per topic, in write order, so a job's events stay in order) and
then marks the lot published in one store call. If the process dies first, `OutboxRelay`
publishes them later. Consumers see each event at least once and drop copies by version
(every handler is a conditional write).

Waiting for the broker's acknowledgement and for the mark inside every transition made each
one cost three round trips instead of one, and the store and broker calls of a busy
pipeline queued behind each other. `flush` waits for what was handed over.

Gathering: only a new job's event has someone waiting on it (the launcher). The
events of moves wait up to `gather_s` for more to join them, so at a steady trickle one
publish and one mark serve many transitions instead of one each; a create ends the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

from stoker.core.clock import Clock
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord
from stoker.core.waiting import stop_requested
from stoker.lifecycle.outbox_events import status_changed
from stoker.ports.bus import Publisher
from stoker.ports.store import JobStore, OutboxEntry
from stoker.telemetry import metrics

log = structlog.get_logger("stoker.lifecycle")


class Transitioner:
    """Create and move jobs with their events, for every service."""

    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        *,
        store_delivers_outbox: bool = False,
        gather_s: float = 0.0,
    ) -> None:
        """`store_delivers_outbox`: the store's outbox items reach consumers by themselves
        (DynamoDB Streams mode: the table's stream is the bus), so they are only marked.
        `gather_s`: how long the events of moves wait for more before they are published
        (0: at once); a create's events are published at once and take them along."""
        if gather_s < 0:
            raise ValueError(f"gather_s must be >= 0, got {gather_s}")
        self.store = store
        self._publisher = publisher
        self._store_delivers = store_delivers_outbox
        self._gather_s = gather_s
        self._unpublished: list[tuple[str, CloudEvent]] = []
        self._publishing: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()  # set: publish what gathered without waiting
        self._flushing = False

    async def create(
        self, job: JobRecord, extra: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        outbox = status_changed(None, job, "submitted") + list(extra)
        stored, created = await self.store.create(job, outbox=outbox)
        if created:
            log.info("job created", job_id=job.job_id, owner=job.owner)
            metrics.JOBS_SUBMITTED.inc()
            self._hand_over(outbox, urgent=True)
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
        self._hand_over(outbox, urgent=False)
        if stored.status.terminal and job.status is not stored.status:
            metrics.labelled(metrics.JOBS_ENDED, stored.status.value).inc()
        return stored

    async def publish_extra(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Publish events that are not part of a transition (they can be derived again)."""
        for topic, event in events:
            await self._publisher.publish(topic, event)

    async def flush(self) -> None:
        """Wait until every event handed over so far is published and marked (or failed,
        leaving it to the relay)."""
        while self._publishing is not None and not self._publishing.done():
            self._flushing = True
            self._urgent.set()
            await asyncio.shield(self._publishing)
        self._flushing = False

    def _hand_over(self, outbox: Sequence[tuple[str, CloudEvent]], *, urgent: bool) -> None:
        self._unpublished.extend(outbox)
        if urgent:
            self._urgent.set()
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.get_running_loop().create_task(
                self._publish_handed_over(), name="stoker-outbox-publish"
            )

    async def _publish_handed_over(self) -> None:
        loop = asyncio.get_running_loop()
        unmarked: list[str] = []
        marked_at = loop.time()
        while self._unpublished or unmarked:
            urgent = True
            if self._gather_s > 0 and not self._flushing:
                urgent = await stop_requested(self._urgent, self._gather_s)
            self._urgent.clear()
            batch, self._unpublished = self._unpublished, []
            if batch:
                unmarked += await self._publish(batch)
            # A new job's event goes at once; its mark may wait for the next ones, since the
            # relay only takes entries older than its grace (seconds, against a gather's ms).
            if unmarked and (
                not urgent or self._flushing or loop.time() - marked_at >= self._gather_s
            ):
                await self._mark(unmarked)
                unmarked, marked_at = [], loop.time()

    async def _publish(self, outbox: Sequence[tuple[str, CloudEvent]]) -> list[str]:
        """Publish `outbox` a topic at a time; returns the ids to mark ([] if it failed)."""
        by_topic: dict[str, list[CloudEvent]] = {}
        for topic, event in outbox:
            by_topic.setdefault(topic, []).append(event)
        try:
            if not self._store_delivers:
                await asyncio.gather(
                    *(self._publisher.publish_many(t, events) for t, events in by_topic.items())
                )
        except Exception as exc:  # the relay will publish them; the write already happened
            log.warning("publish after write failed; relay will retry", error=str(exc))
            return []
        return [event.id for _, event in outbox]

    async def _mark(self, ids: list[str]) -> None:
        try:
            await self.store.mark_published(ids)
        except Exception as exc:  # the relay publishes them again; consumers drop copies
            log.warning("marking published events failed; relay will retry", error=str(exc))


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
