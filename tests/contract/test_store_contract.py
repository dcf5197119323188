"""One JobStore contract, run over every adapter (memory, SQLite, DynamoDB Local)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from stoker.core.auth import Role
from stoker.core.cursors import InvalidCursor
from stoker.core.errors import IllegalTransition, ItemTooLarge, JobNotFound, VersionConflict
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.store_rules import cursor_before
from stoker.core.tokens import TokenNotFound, issue_token
from stoker.ports.store import JobStore, Store
from tests.contract.store_factories import STORE_FACTORIES, StoreContext

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = JobStatus


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, dynamodb_endpoint: str
) -> AsyncIterator[Store]:
    factory = STORE_FACTORIES[request.param]
    async with factory(StoreContext(tmp_path, dynamodb_endpoint)) as built:
        yield built


def job(job_id: str, *, owner: str = "alice", at: datetime = T0, **extra: object) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        owner=owner,
        created_at=at,
        updated_at=at,
        spec={"image": "trainer:1"},
        **extra,  # type: ignore[arg-type]
    )


def status_event(record: JobRecord, from_status: JobStatus | None) -> CloudEvent:
    data = JobStatusChanged(
        job_id=record.job_id,
        owner=record.owner,
        version=record.version,
        from_status=from_status,
        to_status=record.status,
        attempt=record.attempt,
    )
    return CloudEvent.wrap(data, time=record.updated_at)


def change(to: JobStatus, at: datetime, **extra: object) -> JobChange:
    return JobChange(to_status=to, at=at, **extra)  # type: ignore[arg-type]


async def test_create_is_idempotent(store: JobStore) -> None:
    """Creating the same job id twice keeps the first job and writes nothing the second time."""
    first = job("j1")
    stored, created = await store.create(first, outbox=[("lifecycle", status_event(first, None))])
    assert created is True
    assert stored == first

    again = job("j1", owner="mallory")
    stored, created = await store.create(again, outbox=[("lifecycle", status_event(again, None))])
    assert created is False
    assert stored == first
    assert await store.get("j1") == first
    assert len(await store.history("j1")) == 1
    assert len(await store.pending_outbox()) == 1


async def test_unknown_job_raises_job_not_found(store: JobStore) -> None:
    """get, history and transition of an id that was never created raise JobNotFound."""
    with pytest.raises(JobNotFound):
        await store.get("nope")
    with pytest.raises(JobNotFound):
        await store.history("nope")
    with pytest.raises(JobNotFound):
        await store.transition("nope", change(S.LAUNCHING, T0), expected_version=1)


async def test_get_many_gives_the_jobs_that_exist_by_id(store: JobStore) -> None:
    """One call for a batch (the launcher's intake): unknown ids are left out, repeated ids
    are one, and more ids than one DynamoDB BatchGetItem takes (100) are all answered."""
    ids = [f"job-{n:03d}" for n in range(120)]
    for job_id in ids:
        await store.create(job(job_id))
    found = await store.get_many([*reversed(ids), "nobody", ids[0]])
    assert sorted(found) == ids
    assert found["job-007"] == await store.get("job-007")
    assert await store.get_many(["nobody"]) == {}
    assert await store.get_many([]) == {}


async def test_transitions_keep_history_with_reasons_and_timestamps(store: JobStore) -> None:
    """Each transition bumps the version and adds one history line, oldest first."""
    await store.create(job("j1"))
    t1, t2 = T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
    launching = await store.transition(
        "j1", change(S.LAUNCHING, t1, reason="picked up", attempt=1), expected_version=1
    )
    assert (launching.status, launching.version, launching.attempt) == (S.LAUNCHING, 2, 1)
    launched = await store.transition(
        "j1",
        change(S.LAUNCHED, t2, reason="accepted", details={"arn": "arn:x"}),
        expected_version=2,
    )
    assert launched.details == {"arn": "arn:x"}
    assert await store.get("j1") == launched

    lines = await store.history("j1")
    assert [(line.from_status, line.to_status, line.version) for line in lines] == [
        (None, S.NEW, 1),
        (S.NEW, S.LAUNCHING, 2),
        (S.LAUNCHING, S.LAUNCHED, 3),
    ]
    assert [line.at for line in lines] == [T0, t1, t2]
    assert [line.reason for line in lines][1:] == ["picked up", "accepted"]
    assert lines[2].attempt == 1


async def test_illegal_transition_is_rejected_and_writes_nothing(store: JobStore) -> None:
    """The state machine forbids New -> Completed; the job, history and outbox stay as they were."""
    await store.create(job("j1"))
    record = await store.get("j1")
    with pytest.raises(IllegalTransition):
        await store.transition(
            "j1",
            change(S.COMPLETED, T0),
            expected_version=1,
            outbox=[("lifecycle", status_event(record, S.NEW))],
        )
    assert await store.get("j1") == record
    assert len(await store.history("j1")) == 1
    assert await store.pending_outbox() == []


async def test_concurrent_writers_exactly_one_wins(store: JobStore) -> None:
    """Two writers with the same expected version: one succeeds, the other gets VersionConflict
    carrying the actual version, and only the winner's outbox event is written."""
    record, _ = await store.create(job("j1"))
    outcomes = await asyncio.gather(
        store.transition(
            "j1",
            change(S.LAUNCHING, T0, reason="writer a"),
            expected_version=1,
            outbox=[("lifecycle", status_event(record, None))],
        ),
        store.transition(
            "j1",
            change(S.STOPPING, T0, reason="writer b"),
            expected_version=1,
            outbox=[("lifecycle", status_event(record, None))],
        ),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, JobRecord)]
    losers = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert (losers[0].expected, losers[0].actual) == (1, 2)
    assert await store.get("j1") == winners[0]
    assert len(await store.history("j1")) == 2
    assert len(await store.pending_outbox()) == 1


async def test_stale_version_is_a_conflict_with_the_actual_version(store: JobStore) -> None:
    """A replayed transition (expected version already passed) is refused, naming the version."""
    await store.create(job("j1"))
    await store.transition("j1", change(S.LAUNCHING, T0), expected_version=1)
    with pytest.raises(VersionConflict) as caught:
        await store.transition("j1", change(S.LAUNCHING, T0), expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)


async def test_a_callers_copy_is_used_only_while_its_version_holds(store: JobStore) -> None:
    """Given the caller's copy of the job, the write still depends on the stored version:
    both writers holding version 1 race, one wins, the other is a conflict, and nothing of
    the loser is stored."""
    record, _ = await store.create(job("j1"))
    moved = await store.transition(
        "j1", change(S.LAUNCHING, T0), expected_version=1, current=record
    )
    assert moved.status is S.LAUNCHING
    assert moved.version == 2
    with pytest.raises(VersionConflict) as caught:
        await store.transition(
            "j1", change(S.STOPPED, T0, reason="late"), expected_version=1, current=record
        )
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    # Illegal from the stale copy's status, but the version decides first.
    with pytest.raises(VersionConflict):
        await store.transition("j1", change(S.COMPLETED, T0), expected_version=1, current=record)
    assert await store.get("j1") == moved
    assert [line.to_status for line in await store.history("j1")] == [S.NEW, S.LAUNCHING]
    with pytest.raises(JobNotFound):
        await store.transition(
            "nope",
            change(S.LAUNCHING, T0),
            expected_version=1,
            current=record.model_copy(update={"job_id": "nope"}),
        )


async def test_list_by_status_and_owner_pages_newest_first(store: JobStore) -> None:
    """list_jobs filters by status and/or owner, newest first, across cursor pages."""
    for n in range(7):
        owner = "alice" if n % 3 else "bob"
        await store.create(job(f"j{n}", owner=owner, at=T0 + timedelta(minutes=n)))
    for job_id in ("j1", "j2", "j3", "j5"):
        await store.transition(job_id, change(S.LAUNCHING, T0), expected_version=1)

    async def all_pages(**filters: object) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await store.list_jobs(limit=2, cursor=cursor, **filters)  # type: ignore[arg-type]
            assert len(page.items) <= 2
            seen.extend(item.job_id for item in page.items)
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert await all_pages() == ["j6", "j5", "j4", "j3", "j2", "j1", "j0"]
    assert await all_pages(status=S.LAUNCHING) == ["j5", "j3", "j2", "j1"]
    assert await all_pages(owner="bob") == ["j6", "j3", "j0"]
    assert await all_pages(owner="alice", status=S.NEW) == ["j4"]
    assert await all_pages(owner="alice", status=S.LAUNCHING) == ["j5", "j2", "j1"]
    assert await all_pages(owner="carol") == []
    last = await store.list_jobs(limit=7)
    assert last.next_cursor is None


async def test_a_listing_can_start_at_a_creation_time(store: JobStore) -> None:
    """`cursor_before(t)` (what the API's created_until becomes) starts a listing at the
    newest job created at or before t, on every store, and pages on from there."""
    for n in range(5):
        await store.create(job(f"t{n}", at=T0 + timedelta(seconds=n)))
    first = await store.list_jobs(limit=2, cursor=cursor_before(T0 + timedelta(seconds=3)))
    assert [j.job_id for j in first.items] == ["t3", "t2"]
    rest = await store.list_jobs(limit=10, cursor=first.next_cursor)
    assert [j.job_id for j in rest.items] == ["t1", "t0"]
    assert rest.next_cursor is None
    early = await store.list_jobs(cursor=cursor_before(T0 - timedelta(microseconds=1)))
    assert early.items == []


async def test_list_by_team_sees_only_that_teams_jobs(store: JobStore) -> None:
    """list_jobs(team=...) alone and with status and/or owner gives that team's jobs only,
    newest first across pages; a job made without a team is the default team's; an owner
    with jobs in two teams is listed per team."""
    teams = ["search", "ads", "search", "default", "search", "ads", "search"]
    for n, team in enumerate(teams):
        owner = "alice" if n % 2 else "bob"
        extra = {} if team == "default" else {"team": team}
        await store.create(job(f"t{n}", owner=owner, at=T0 + timedelta(minutes=n), **extra))
    for job_id in ("t2", "t5", "t6"):
        await store.transition(job_id, change(S.LAUNCHING, T0), expected_version=1)
    # A transition keeps the job in its team's listings.
    assert (await store.get("t2")).team == "search"
    assert (await store.get("t3")).team == "default"

    async def all_pages(**filters: object) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await store.list_jobs(limit=2, cursor=cursor, **filters)  # type: ignore[arg-type]
            seen.extend(item.job_id for item in page.items)
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert await all_pages(team="search") == ["t6", "t4", "t2", "t0"]
    assert await all_pages(team="ads") == ["t5", "t1"]
    assert await all_pages(team="default") == ["t3"]
    assert await all_pages(team="search", status=S.LAUNCHING) == ["t6", "t2"]
    assert await all_pages(team="search", status=S.NEW) == ["t4", "t0"]
    assert await all_pages(team="search", owner="bob") == ["t6", "t4", "t2", "t0"]
    assert await all_pages(team="ads", owner="alice") == ["t5", "t1"]
    assert await all_pages(team="ads", owner="bob") == []
    assert await all_pages(team="search", owner="bob", status=S.LAUNCHING) == ["t6", "t2"]
    assert await all_pages(team="ads", owner="alice", status=S.NEW) == ["t1"]
    assert await all_pages(team="nobody") == []
    assert await all_pages(owner="alice") == ["t5", "t3", "t1"]
    assert len(await all_pages()) == 7


async def test_tokens_are_stored_listed_and_revoked(store: Store) -> None:
    """A stored token is read back by id and listed oldest first; revoking keeps it
    (with the first revocation time, also when revoked again); an unknown id reads None
    and cannot be revoked."""
    first = issue_token("ana", "search", Role.SUBMITTER, T0).record
    second = issue_token("bo", "ads", Role.VIEWER, T0 + timedelta(seconds=1)).record
    await store.put_token(second)
    await store.put_token(first)
    assert await store.get_token(first.token_id) == first
    assert await store.get_token("0123456789ab") is None
    assert [t.token_id for t in await store.list_tokens()] == [first.token_id, second.token_id]

    revoked = await store.revoke_token(first.token_id, T0 + timedelta(minutes=1))
    assert revoked.revoked_at == T0 + timedelta(minutes=1)
    assert revoked.state(T0 + timedelta(minutes=2)) == "revoked"
    again = await store.revoke_token(first.token_id, T0 + timedelta(minutes=5))
    assert again.revoked_at == T0 + timedelta(minutes=1)
    assert await store.get_token(first.token_id) == revoked
    assert await store.get_token(second.token_id) == second
    assert len(await store.list_tokens()) == 2
    with pytest.raises(TokenNotFound):
        await store.revoke_token("0123456789ab", T0)


async def test_a_foreign_cursor_is_rejected(store: JobStore) -> None:
    """A cursor the store did not hand out raises InvalidCursor instead of a random page."""
    with pytest.raises(InvalidCursor):
        await store.list_jobs(cursor="not a cursor!")


async def test_a_job_over_the_item_limit_is_refused_naming_the_field(
    store: JobStore, request: pytest.FixtureRequest
) -> None:
    """DynamoDB holds at most 400 KB per item: a larger job is refused before the write
    with ItemTooLarge naming the field that makes it large, and nothing is written. The
    stores without such a limit keep the job whole."""
    big = JobRecord(
        job_id="big",
        owner="alice",
        created_at=T0,
        updated_at=T0,
        spec={"training": {"HyperParameters": {f"p{i}": "x" * 2500 for i in range(200)}}},
    )
    if request.node.callspec.params["store"] != "dynamodb":
        assert (await store.create(big))[1] is True
        assert (await store.get("big")).spec == big.spec
        return
    with pytest.raises(ItemTooLarge) as caught:
        await store.create(big, outbox=[("lifecycle", status_event(big, None))])
    assert caught.value.field == "training.HyperParameters"
    with pytest.raises(JobNotFound):
        await store.get("big")
    assert await store.pending_outbox() == []


async def test_due_returns_waiting_retries_earliest_first(store: JobStore) -> None:
    """due(now) lists RetryScheduled jobs whose due time has come, earliest first; a job
    leaves the index when it moves on."""
    waits = {"late": 30, "soon": 10, "exact": 20, "future": 90}
    for job_id, wait in waits.items():
        await store.create(job(job_id))
        await store.transition(job_id, change(S.LAUNCHING, T0), expected_version=1)
        await store.transition(
            job_id,
            change(
                S.RETRY_SCHEDULED,
                T0,
                reason="CapacityError",
                due_at=T0 + timedelta(seconds=wait),
            ),
            expected_version=2,
        )
    await store.create(job("fresh"))
    now = T0 + timedelta(seconds=30)
    assert [j.job_id for j in await store.due(now)] == ["soon", "exact", "late"]
    assert [j.job_id for j in await store.due(now, limit=1)] == ["soon"]

    await store.transition("soon", change(S.LAUNCHING, now), expected_version=3)
    assert [j.job_id for j in await store.due(now)] == ["exact", "late"]
    assert await store.due(T0) == []


async def test_trends_count_statuses_per_day_and_retries_per_reason(store: JobStore) -> None:
    """trends counts jobs entering each status per UTC day and retries by reason, over
    the whole UTC days from since to until."""
    day1, day2 = T0, T0 + timedelta(days=1)
    for job_id in ("a", "b"):
        await store.create(job(job_id, at=day1))
        await store.transition(job_id, change(S.LAUNCHING, day1), expected_version=1)
    await store.transition(
        "a",
        change(S.RETRY_SCHEDULED, day2, reason="CapacityError", due_at=day2),
        expected_version=2,
    )
    await store.transition(
        "b",
        change(S.RETRY_SCHEDULED, day2, reason="CapacityError", due_at=day2),
        expected_version=2,
    )
    await store.transition("a", change(S.LAUNCHING, day2), expected_version=3)
    await store.transition(
        "a",
        change(S.RETRY_SCHEDULED, day2, reason="ResourceLimitExceeded", due_at=day2),
        expected_version=4,
    )
    await store.create(job("outside", at=T0 + timedelta(days=5)))

    trends = await store.trends(day1, day2)
    assert trends.jobs_per_status_per_day == {
        date(2026, 3, 1): {S.NEW: 2, S.LAUNCHING: 2},
        date(2026, 3, 2): {S.RETRY_SCHEDULED: 3, S.LAUNCHING: 1},
    }
    assert trends.retries_per_reason == {"CapacityError": 2, "ResourceLimitExceeded": 1}
    only_day2 = await store.trends(day2, day2 + timedelta(hours=1))
    assert list(only_day2.jobs_per_status_per_day) == [date(2026, 3, 2)]
    with pytest.raises(ValueError, match="before since"):
        await store.trends(day2, day1)


async def test_trends_measure_completion_times_and_billable_time_per_team(
    store: JobStore,
) -> None:
    """trends gives times to completion (as percentiles within 10% above the true value),
    billable seconds by instance type and team (counted once, when the backend first reports
    them, an amendment included), and a team's trends hold only that team's jobs."""

    async def run(job_id: str, team: str, took: timedelta, billable: int | None) -> None:
        await store.create(job(job_id, team=team))
        await store.transition(job_id, change(S.LAUNCHED, T0), expected_version=1)
        details = {"instance_type": "ml.p3.2xlarge"}
        if billable is not None:
            details["billable_seconds"] = billable  # type: ignore[assignment]
        await store.transition(
            job_id, change(S.COMPLETED, T0 + took, details=details), expected_version=2
        )

    await run("s1", "search", timedelta(seconds=60), 50)
    await run("s2", "search", timedelta(seconds=600), None)
    await run("a1", "ads", timedelta(hours=2), 7000)
    # The description arrives after the end was recorded: counted once, on its own write.
    await store.transition(
        "s2", change(S.COMPLETED, T0, details={"billable_seconds": 580}), expected_version=3
    )
    await store.transition(
        "s2", change(S.COMPLETED, T0, details={"billable_seconds": 580}), expected_version=4
    )

    every = await store.trends(T0, T0 + timedelta(days=1))
    assert every.billable_seconds == {
        ("ml.p3.2xlarge", "search"): 630,
        ("ml.p3.2xlarge", "ads"): 7000,
    }
    assert sum(every.completions_per_bucket.values()) == 3
    p50, p99 = every.completion_percentiles(0.5, 0.99).values()
    assert p50 is not None
    assert 600 <= p50 < 660
    assert p99 is not None
    assert 7200 <= p99 < 7920
    assert every.jobs_per_status_per_day[date(2026, 3, 1)][S.COMPLETED] == 3

    search = await store.trends(T0, T0 + timedelta(days=1), team="search")
    assert search.billable_seconds == {("ml.p3.2xlarge", "search"): 630}
    assert search.jobs_per_status_per_day == {
        date(2026, 3, 1): {S.NEW: 2, S.LAUNCHED: 2, S.COMPLETED: 2}
    }
    assert search.completion_percentiles(1.0)[1.0] == pytest.approx(
        every.completion_percentiles(0.5)[0.5]
    )
    nobody = await store.trends(T0, T0, team="nobody")
    assert nobody.jobs_per_status_per_day == {}
    assert nobody.completion_percentiles(0.5) == {0.5: None}


async def test_outbox_is_written_with_the_transition_until_published(store: JobStore) -> None:
    """Outbox events land with their write, in write order, and leave when marked published."""
    first = job("j1")
    created_event = status_event(first, None)
    await store.create(first, outbox=[("stoker.jobs.lifecycle", created_event)])
    moved = await store.transition("j1", change(S.LAUNCHING, T0), expected_version=1)
    await store.transition(
        "j1",
        change(S.LAUNCHED, T0),
        expected_version=2,
        outbox=[("stoker.jobs.lifecycle", status_event(moved, S.NEW))],
    )
    pending = await store.pending_outbox()
    assert [(e.topic, e.event.data.version) for e in pending] == [  # type: ignore[attr-defined]
        ("stoker.jobs.lifecycle", 1),
        ("stoker.jobs.lifecycle", 2),
    ]
    assert pending[0].event == created_event
    assert [e.entry_id for e in await store.pending_outbox(limit=1)] == [pending[0].entry_id]

    await store.mark_published([pending[0].entry_id])
    assert [e.entry_id for e in await store.pending_outbox()] == [pending[1].entry_id]
    await store.mark_published([pending[1].entry_id, pending[1].entry_id])
    assert await store.pending_outbox() == []


async def test_a_writer_marks_its_events_published_by_their_ids(store: JobStore) -> None:
    """The writer that just published a transition's events marks them by event id (the
    port's promise: entry_id == event.id), so the relay does not publish them again."""
    first = job("j1")
    created_event = status_event(first, None)
    other = job("j2")
    other_event = status_event(other, None)
    await store.create(first, outbox=[("stoker.jobs.lifecycle", created_event)])
    await store.create(other, outbox=[("stoker.jobs.lifecycle", other_event)])
    assert [e.entry_id for e in await store.pending_outbox()] == [
        created_event.id,
        other_event.id,
    ]
    await store.mark_published([created_event.id])
    assert [e.event for e in await store.pending_outbox()] == [other_event]


async def test_concurrent_calls_each_get_their_own_outcome(store: JobStore) -> None:
    """Calls made at once (grouped into one transaction by the SQLite store) succeed or
    fail one by one: a version conflict refuses only its own write."""
    for n in range(20):
        await store.create(job(f"j{n}"))
    results = await asyncio.gather(
        *(
            store.transition(f"j{n}", change(S.LAUNCHING, T0), expected_version=1 if n % 2 else 7)
            for n in range(20)
        ),
        *(store.get(f"j{n}") for n in range(20)),
        return_exceptions=True,
    )
    moves, reads = results[:20], results[20:]
    assert [isinstance(r, VersionConflict) for r in moves] == [n % 2 == 0 for n in range(20)]
    assert all(isinstance(r, JobRecord) for r in reads)
    for n in range(20):
        expected = S.LAUNCHING if n % 2 else S.NEW
        assert (await store.get(f"j{n}")).status is expected
        assert len(await store.history(f"j{n}")) == (2 if n % 2 else 1)


async def test_failed_conditional_write_writes_no_outbox_event(store: JobStore) -> None:
    """A transition refused for its version leaves no outbox event and no history line."""
    record, _ = await store.create(job("j1"))
    await store.transition("j1", change(S.LAUNCHING, T0), expected_version=1)
    with pytest.raises(VersionConflict):
        await store.transition(
            "j1",
            change(S.STOPPING, T0),
            expected_version=1,
            outbox=[("lifecycle", status_event(record, None))],
        )
    assert await store.pending_outbox() == []
    assert len(await store.history("j1")) == 2


async def test_an_ended_job_is_amended_without_a_transition(store: JobStore) -> None:
    """A Completed job given its description later (the same status, more details) gets a new
    version and the details, its outbox event, and no history line or trend count; an
    amendment that tries to change more than details is refused."""
    await store.create(job("j1"))
    t1, t2 = T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
    await store.transition("j1", change(S.LAUNCHING, T0, attempt=1), expected_version=1)
    await store.transition("j1", change(S.LAUNCHED, T0), expected_version=2)
    ended = await store.transition(
        "j1",
        change(S.COMPLETED, t1, details={"details_pending": True, "ended_at": t1.isoformat()}),
        expected_version=3,
    )
    await store.mark_published([e.entry_id for e in await store.pending_outbox()])
    amended = await store.transition(
        "j1",
        change(S.COMPLETED, t2, details={"details_pending": False, "billable_seconds": 60}),
        expected_version=ended.version,
        outbox=[("completed", status_event(ended, S.COMPLETED))],
    )
    assert (amended.status, amended.version) == (S.COMPLETED, ended.version + 1)
    assert amended.details["billable_seconds"] == 60
    assert amended.details["ended_at"] == t1.isoformat(), "earlier details are kept"
    assert await store.get("j1") == amended
    lines = await store.history("j1")
    assert [line.to_status for line in lines] == [S.NEW, S.LAUNCHING, S.LAUNCHED, S.COMPLETED]
    assert len(await store.pending_outbox()) == 1
    trends = await store.trends(T0, T0)
    assert trends.jobs_per_status_per_day[date(2026, 3, 1)][S.COMPLETED] == 1
    with pytest.raises(IllegalTransition):
        await store.transition(
            "j1", change(S.COMPLETED, t2, attempt=2), expected_version=amended.version
        )
    with pytest.raises(IllegalTransition):
        await store.transition("j1", change(S.FAILED, t2), expected_version=amended.version)
