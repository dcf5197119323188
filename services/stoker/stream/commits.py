"""The agent's own offset commits, one Kafka transaction per source partition.

Faust's exactly-once commits what its consumer has seen acknowledged, and it acknowledges
more than the pairs the agent scored: `take_events` acknowledges a whole batch when the
next one is asked for (pairs of an older generation that the agent left for their new
owner included), the stream acknowledges what it skips while a rebalance or a stop holds
the flow, and the consumer forgets the acknowledgements of revoked partitions before its
last commit. Each of those can commit an offset without its score (a lost pair) or a score
without its offset (a second score). So the pairs topic is read with acks off (Faust tracks
and commits nothing of it), and this class commits the offsets of the pairs the agent
handled, under the lock the agent holds from a batch's first output to its last, through
the transaction of each pair's partition (`TransactionManager.commit`: offsets and outputs
in one transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

import faust
import structlog
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, EventT

from stoker.core.clock import Clock
from stoker.stream.gaps import GapProbe
from stoker.stream.publish import transactional_ids

log = structlog.get_logger("stoker.stream.commits")


class Commits:
    """What the agent handled since its last commit, and the commits themselves."""

    def __init__(self, app: faust.App, clock: Clock, interval_s: float, probe: GapProbe) -> None:
        self._app = app
        self._probe = probe
        self._clock = clock
        self._interval_s = interval_s
        self.lock = asyncio.Lock()
        """Held from a batch's first output to its last, and by every commit."""
        self._next: dict[TP, int] = {}
        self._expected: dict[TP, int] = {}
        """The offset after the last pair handled, per partition, since it was assigned."""
        self._revoked_generation: int | None = None
        self._reading_again: set[TP] = set()
        """Partitions sought back to a record the stream skipped, until it comes."""
        self._last = clock.monotonic()
        # Broker acknowledgements of the outputs sent since the last commit. A batch does not
        # wait for them: committing the transaction sends whatever is still buffered and
        # fails if any send failed, so they are only collected (and their errors raised) here.
        self._unsettled: list[Awaitable[object]] = []
        self.stopping = False
        """Set once the worker stops: the agent handles no batch after the last commit."""

    async def fresh(self, events: Iterable[EventT[Any]]) -> list[EventT[Any]]:
        """The events of the current assignment this worker has not handled yet.

        Events taken before a rebalance belong to the old assignment (those taken after
        the revoke commit too): their partition is read again from its committed offset by
        its owner now, maybe this worker, so scoring them here as well would score them
        twice. Faust's own iterator skips them the same way; `take` had buffered them.
        Around a recovery Faust also seeks a partition back to its committed offset and
        delivers pairs again that the agent already handled: those are dropped too. And it
        sometimes drops a record or two right after a recovery: a jump forward onto a
        record (`GapProbe`) seeks the partition back to it, and the partition's events are
        dropped until it comes."""
        generation = self._app.consumer_generation_id
        out: list[EventT[Any]] = []
        seek_again: set[TP] = set()
        sought: set[TP] = set()
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            if message.generation_id != generation or generation == self._revoked_generation:
                continue
            expected = self._expected.get(tp)
            if expected is not None and offset < expected:
                continue
            if tp in self._reading_again and offset != expected:
                # Taken before the seek back, or delivered by a fetch that was under way
                # while it happened (Faust then takes the missing record for one it has
                # already delivered, and drops it): seek again until it comes.
                seek_again.add(tp)
                continue
            self._reading_again.discard(tp)
            if (
                expected is not None
                and offset > expected
                and await self._probe.holds_record(tp, expected)
            ):
                log.warning(
                    "pairs topic record skipped by the stream; reading it again",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=expected,
                )
                await self._app.consumer.seek(tp, expected)
                self._reading_again.add(tp)
                sought.add(tp)
                continue
            self._expected[tp] = offset + 1
            out.append(event)
        for tp in (seek_again & self._reading_again) - sought:
            await self._app.consumer.seek(tp, self._expected[tp])
        return out

    def handled(self, events: Iterable[EventT[Any]], acks: list[Awaitable[object]]) -> None:
        """The agent sent every output of these pairs (`acks`: the sends' acknowledgements)."""
        self._unsettled.extend(acks)
        for event in events:
            message = event.message
            tp = message.tp
            self._next[tp] = max(self._next.get(tp, 0), message.offset + 1)

    @property
    def due(self) -> bool:
        return self._clock.monotonic() - self._last >= self._interval_s

    async def commit(self, *, end: bool = False) -> None:
        """Commit the handled pairs' offsets with their outputs (call under `lock`); `end`
        starts no new transaction after it."""
        offsets = {tp: offset for tp, offset in self._next.items() if tp in self._assignment()}
        if offsets and self._app.in_transaction:
            await self._app.consumer.transactions.commit(offsets, start_new_transaction=not end)
        self._next.clear()
        settled, self._unsettled = self._unsettled, []
        await asyncio.gather(*settled)
        self._last = self._clock.monotonic()

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Commit what was handled, then drop the revoked partitions' producers.

        The rebalance revokes every partition, and one may come back to this worker. Its
        producer would keep whatever it sent after the commit, in an open transaction, while
        the partition is read again from the committed offset. A new producer (Faust starts
        one for every partition assigned) initialises with the same transactional id, which
        aborts that transaction and waits until the last commit is complete, so the offset
        the worker seeks to is the final one. A partition that moves gets the same from its
        new owner."""
        async with self.lock:
            await self.commit(end=True)
            self._expected.clear()  # whoever gets a partition reads it from its commit
            self._reading_again.clear()
            self._revoked_generation = self._app.consumer_generation_id
            for transactional_id in sorted(transactional_ids(self._app, revoked)):
                await self._app.producer.stop_transaction(transactional_id)

    async def on_stop(self) -> None:
        """The last commit of a worker that stops: after the batch in hand, before Faust
        stops the agent and the producers."""
        async with self.lock:
            self.stopping = True
            await self.commit(end=True)

    def _assignment(self) -> set[TP]:
        try:
            return set(self._app.consumer.assignment())
        except ConsumerNotStarted:
            return set()
