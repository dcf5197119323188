"""The agent's own commits: the offsets of the pairs it handled, with their outputs, in the
transaction of each pair's partition; a rebalance commits and drops the revoked partitions'
producers; a stop commits once more and lets no batch start after it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from faust.types import TP

from stoker.core.clock import FakeClock
from stoker.stream.commits import Commits
from stoker.stream.gaps import NoGaps

P0, P1, P2 = TP("pairs", 0), TP("pairs", 1), TP("pairs", 2)


@dataclass
class FakeKafka:
    """What `Commits` uses of a Faust app: its assignment, its transaction manager's
    commit and its producer's `stop_transaction`."""

    assignment: set[TP] = field(default_factory=lambda: {P0, P1})
    commits: list[tuple[dict[TP, int], bool]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    generation: int = 1
    sought: list[tuple[TP, int]] = field(default_factory=list)

    def app(self) -> faust.App:
        async def commit(offsets: dict[TP, int], start_new_transaction: bool = True) -> bool:
            self.commits.append((dict(offsets), start_new_transaction))
            return True

        async def stop_transaction(transactional_id: str) -> None:
            self.stopped.append(transactional_id)

        async def seek(tp: TP, offset: int) -> None:
            self.sought.append((tp, offset))

        fake = SimpleNamespace(
            in_transaction=True,
            consumer_generation_id=self.generation,
            conf=SimpleNamespace(id="app"),
            assignor=SimpleNamespace(group_for_topic=lambda topic: 0),
            consumer=SimpleNamespace(
                assignment=lambda: self.assignment,
                seek=seek,
                transactions=SimpleNamespace(commit=commit),
            ),
            producer=SimpleNamespace(stop_transaction=stop_transaction),
        )
        return cast(faust.App, fake)


def events(tp: TP, *offsets: int, generation: int = 1) -> list[Any]:
    return [
        SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o, generation_id=generation))
        for o in offsets
    ]


def offsets(handled: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp.partition, e.message.offset) for e in handled]


def acked() -> asyncio.Future[object]:
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_commit_takes_the_next_offset_of_each_handled_partition(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    commits.handled(events(P0, 10, 11, 12) + events(P1, 4), [acked()])
    commits.handled(events(P0, 13), [acked()])
    async with commits.lock:
        await commits.commit()
    assert kafka.commits == [({P0: 14, P1: 5}, True)]
    async with commits.lock:
        await commits.commit()  # nothing handled since: nothing to commit
    assert len(kafka.commits) == 1


async def test_partitions_no_longer_assigned_are_not_committed(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    commits.handled(events(P0, 1) + events(P2, 7), [])
    async with commits.lock:
        await commits.commit()
    assert kafka.commits == [({P0: 2}, True)]


async def test_a_commit_is_due_after_the_interval(clock: FakeClock) -> None:
    commits = Commits(FakeKafka().app(), clock, interval_s=0.5, probe=NoGaps())
    assert not commits.due
    clock.advance(0.5)
    assert commits.due
    async with commits.lock:
        await commits.commit()
    assert not commits.due


async def test_a_failed_send_fails_the_commit(clock: FakeClock) -> None:
    commits = Commits(FakeKafka().app(), clock, interval_s=0.5, probe=NoGaps())
    failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("broker refused the record"))
    commits.handled(events(P0, 1), [acked(), failed])
    with pytest.raises(RuntimeError, match="broker refused the record"):
        async with commits.lock:
            await commits.commit()


async def test_a_rebalance_commits_then_drops_the_revoked_producers(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    commits.handled(events(P0, 3) + events(P1, 9), [])
    await commits.on_revoked({P0, P1})
    assert kafka.commits == [({P0: 4, P1: 10}, False)]
    assert kafka.stopped == ["app-0-0", "app-0-1"]


async def test_a_rebalance_waits_for_the_batch_in_hand(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    async with commits.lock:
        revoking = asyncio.create_task(commits.on_revoked({P0}))
        assert kafka.stopped == []
        commits.handled(events(P0, 5), [])
    await revoking
    assert kafka.commits == [({P0: 6}, False)]
    assert kafka.stopped == ["app-0-0"]


async def test_a_stop_commits_once_more_and_no_batch_follows(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    commits.handled(events(P1, 2), [])
    assert not commits.stopping
    await commits.on_stop()
    assert commits.stopping
    assert kafka.commits == [({P1: 3}, False)]


async def test_events_of_an_older_generation_are_left_for_the_new_owner(clock: FakeClock) -> None:
    commits = Commits(FakeKafka(generation=3).app(), clock, interval_s=0.5, probe=NoGaps())
    taken = events(P0, 1, 2, generation=2) + events(P0, 3, generation=3)
    assert offsets(await commits.fresh(taken)) == [(0, 3)]


async def test_pairs_delivered_again_after_a_seek_back_are_dropped(clock: FakeClock) -> None:
    commits = Commits(FakeKafka().app(), clock, interval_s=0.5, probe=NoGaps())
    assert offsets(await commits.fresh(events(P0, 5, 6, 7) + events(P1, 2))) == [
        (0, 5),
        (0, 6),
        (0, 7),
        (1, 2),
    ]
    # Faust seeks P0 back to its committed offset (5) and delivers 5-7 again, then 8.
    assert offsets(await commits.fresh(events(P0, 5, 6, 7, 8) + events(P1, 3))) == [(0, 8), (1, 3)]


async def test_after_a_revoke_no_event_of_that_generation_is_handled(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=NoGaps())
    await commits.fresh(events(P0, 1))
    await commits.on_revoked({P0})
    # Taken between the revoke and the new assignment: still generation 1, left alone.
    assert await commits.fresh(events(P0, 2)) == []


@dataclass
class RecordsAt:
    """A probe that knows which offsets hold a record."""

    offsets: set[int]

    async def holds_record(self, tp: TP, offset: int) -> bool:
        return offset in self.offsets


async def test_a_record_the_stream_skipped_is_read_again(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=RecordsAt({5}))
    assert offsets(await commits.fresh(events(P0, 3, 4, 6, 7))) == [(0, 3), (0, 4)]
    assert kafka.sought == [(P0, 5)]
    # Taken before the seek back: dropped, and the partition sought back again, until 5
    # comes; then 5 onwards as usual.
    assert offsets(await commits.fresh(events(P0, 8))) == []
    assert kafka.sought == [(P0, 5), (P0, 5)]
    assert offsets(await commits.fresh(events(P0, 5, 6, 7, 8))) == [(0, 5), (0, 6), (0, 7), (0, 8)]
    assert kafka.sought == [(P0, 5), (P0, 5)]


async def test_a_jump_over_markers_is_no_gap(clock: FakeClock) -> None:
    kafka = FakeKafka()
    commits = Commits(kafka.app(), clock, interval_s=0.5, probe=RecordsAt(set()))
    assert offsets(await commits.fresh(events(P0, 3, 5))) == [(0, 3), (0, 5)]
    assert kafka.sought == []
