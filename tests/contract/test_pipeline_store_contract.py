"""One PipelineStore contract, run over every adapter (memory, SQLite, DynamoDB Local)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stoker.adapters.store.dynamodb_pipelines import DynamoDbPipelineStore
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.core.cursors import InvalidCursor
from stoker.core.events import CloudEvent
from stoker.core.pipelines import events as ev
from stoker.core.pipelines import parse_definition
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.inputs import JobFailed, JobSucceeded
from stoker.core.pipelines.planner import advance, start
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    PipelineExists,
    PipelineNotFound,
    PipelineVersion,
    ScheduleConflict,
    ScheduleNotFound,
    StoredSchedule,
)
from stoker.core.pipelines.schedules import Schedule
from stoker.core.pipelines.state import ExecutionIdentity, ExecutionState
from stoker.core.pipelines.store_rules import cursor_at
from stoker.core.topics import PIPELINE_EXECUTIONS
from stoker.ports.pipelines import PipelineStore
from tests.contract.store_factories import drop_tables, dynamodb_settings
from tests.unit.pipelines.definitions import pipeline, training

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFINITION = pipeline(
    training(
        "A",
        RetryPolicies=[
            {"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": 30, "MaxAttempts": 2}
        ],
    ),
    training("B", depends_on=["A"]),
)

FACTORIES: dict[str, Callable[[Path], PipelineStore]] = {
    "memory": lambda _: MemoryPipelineStore(),
    "sqlite": lambda tmp: SqlitePipelineStore(tmp / "pipelines.db"),
}


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("dynamodb", marks=pytest.mark.integration),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PipelineStore]:
    if request.param != "dynamodb":
        built = FACTORIES[request.param](tmp_path)
        await built.start()
        try:
            yield built
        finally:
            await built.close()
        return
    endpoint: str = request.getfixturevalue("dynamodb_endpoint")
    dynamodb = DynamoDbPipelineStore(dynamodb_settings(endpoint))
    await dynamodb.start()
    try:
        yield dynamodb
    finally:
        await dynamodb.close()
        await drop_tables(endpoint, [dynamodb.table])


def new_state(execution_id: str, *, at: datetime = T0) -> ExecutionState:
    identity = ExecutionIdentity(
        execution_id, "demo", "arn:p/demo", f"arn:p/demo/execution/{execution_id}"
    )
    return start(parse_definition(DEFINITION), identity, {}, now=at).state


def started_event(execution_id: str) -> tuple[str, CloudEvent]:
    data = ev.PipelineExecutionStarted(
        execution_id=execution_id, pipeline_name="demo", started_at=T0, parameters={}
    )
    return PIPELINE_EXECUTIONS, CloudEvent.wrap(data, time=T0)


async def test_pipelines_are_created_updated_listed_and_deleted(store: PipelineStore) -> None:
    first = await store.put_pipeline(
        "demo", team="search", definition='{"v": 1}', description=None, now=T0
    )
    assert (first.version, first.created_at) == (1, T0)
    later = T0 + timedelta(hours=1)
    second = await store.put_pipeline(
        "demo", team="search", definition='{"v": 2}', description="d", now=later
    )
    assert (second.version, second.definition, second.created_at, second.updated_at) == (
        2,
        '{"v": 2}',
        T0,
        later,
    )
    await store.put_pipeline("other", team="ads", definition="{}", description=None, now=T0)
    assert [p.name for p in await store.list_pipelines()] == ["demo", "other"]
    assert [p.name for p in await store.list_pipelines(team="ads")] == ["other"]
    assert await store.get_pipeline("demo") == second
    await store.delete_pipeline("demo")
    with pytest.raises(PipelineNotFound):
        await store.get_pipeline("demo")
    with pytest.raises(PipelineNotFound):
        await store.delete_pipeline("demo")


async def test_another_team_cannot_replace_a_pipeline(store: PipelineStore) -> None:
    await store.put_pipeline("demo", team="search", definition="{}", description=None, now=T0)
    with pytest.raises(PipelineNotFound):
        await store.put_pipeline("demo", team="ads", definition="{}", description=None, now=T0)
    assert (await store.get_pipeline("demo")).team == "search"


async def test_a_create_only_put_of_a_taken_name_changes_nothing(store: PipelineStore) -> None:
    first = await store.put_pipeline(
        "demo", team="search", definition='{"v": 1}', description=None, now=T0, create_only=True
    )
    with pytest.raises(PipelineExists):
        await store.put_pipeline(
            "demo",
            team="search",
            definition='{"v": 2}',
            description=None,
            now=T0,
            create_only=True,
        )
    assert await store.get_pipeline("demo") == first


async def test_of_racing_creates_of_one_name_exactly_one_is_made(store: PipelineStore) -> None:
    async def create(n: int) -> int:
        stored = await store.put_pipeline(
            "race",
            team="search",
            definition=f'{{"n": {n}}}',
            description=None,
            now=T0,
            create_only=True,
        )
        return stored.version

    outcomes = await asyncio.gather(*(create(n) for n in range(8)), return_exceptions=True)
    assert [o for o in outcomes if not isinstance(o, PipelineExists)] == [1]
    assert (await store.get_pipeline("race")).version == 1


async def test_two_sqlite_stores_on_one_file_make_one_of_racing_creates(tmp_path: Path) -> None:
    """Two stores on one file, as two API processes: the check and the write are one step
    under SQLite's write lock."""
    stores = [SqlitePipelineStore(tmp_path / "shared.db") for _ in range(2)]
    for each in stores:
        await each.start()
    try:
        outcomes = await asyncio.gather(
            *(
                each.put_pipeline(
                    "race",
                    team="search",
                    definition=f'{{"n": {n}}}',
                    description=None,
                    now=T0,
                    create_only=True,
                )
                for n, each in enumerate(stores * 4)
            ),
            return_exceptions=True,
        )
        made = [o for o in outcomes if not isinstance(o, PipelineExists)]
        assert len(made) == 1, outcomes
        assert (await stores[1].get_pipeline("race")).version == 1
    finally:
        for each in stores:
            await each.close()


async def test_versions_and_tags_are_kept(store: PipelineStore) -> None:
    later = T0 + timedelta(hours=1)
    await store.put_pipeline(
        "demo",
        team="search",
        definition="{}",
        description="one",
        now=T0,
        tags=[("owner", "ana")],
    )
    second = await store.put_pipeline(
        "demo", team="search", definition="{}", description="two", now=later
    )
    assert second.versions == (PipelineVersion(1, T0, "one"), PipelineVersion(2, later, "two"))
    assert second.tags == (("owner", "ana"),)  # an update without tags keeps them
    tagged = await store.tag_pipeline(
        "demo", add=[("stage", "dev"), ("owner", "bo")], remove=["absent"]
    )
    assert tagged.tags == (("owner", "bo"), ("stage", "dev"))
    assert tagged.version == 2
    untagged = await store.tag_pipeline("demo", remove=["owner"])
    assert untagged.tags == (("stage", "dev"),)
    assert await store.get_pipeline("demo") == untagged
    with pytest.raises(ValueError, match="at most 50"):
        await store.tag_pipeline("demo", add=[(f"k{n}", "v") for n in range(50)])
    assert (await store.get_pipeline("demo")).tags == (("stage", "dev"),)
    with pytest.raises(PipelineNotFound):
        await store.tag_pipeline("nothing", add=[("a", "b")])


async def test_an_execution_is_created_once_with_its_events(store: PipelineStore) -> None:
    state = new_state("e1")
    stored, created = await store.create_execution(
        state, pipeline_version=3, definition="{}", outbox=[started_event("e1")]
    )
    assert created
    assert (stored.version, stored.pipeline_version) == (1, 3)
    again, created_again = await store.create_execution(
        new_state("e1", at=T0 + timedelta(1)),
        pipeline_version=4,
        definition="{}",
        outbox=[started_event("e1")],
    )
    assert not created_again
    assert again.state == state
    assert again.pipeline_version == 3
    assert len(await store.pending_outbox()) == 1
    assert (await store.get_execution("e1")).state == state
    with pytest.raises(ExecutionNotFound):
        await store.get_execution("nope")


async def test_a_save_lands_only_on_the_version_it_read(store: PipelineStore) -> None:
    """Two writers plan from version 1; one save lands, the other is refused and writes
    nothing (not its state, not its events)."""
    state = new_state("e1")
    await store.create_execution(state, pipeline_version=1, definition="{}")
    failed = advance(
        parse_definition(DEFINITION),
        state,
        JobFailed("A", 1, "Throttled", "Step.THROTTLING"),
        now=T0,
    ).state
    results = await asyncio.gather(
        store.save_execution(failed, expected_version=1, outbox=[started_event("e1")]),
        store.save_execution(failed, expected_version=1, outbox=[started_event("e1")]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ExecutionConflict", "StoredExecution"]
    assert len(await store.pending_outbox()) == 1
    saved = await store.get_execution("e1")
    assert saved.version == 2
    assert saved.state == failed
    with pytest.raises(ExecutionConflict) as info:
        await store.save_execution(failed, expected_version=1)
    assert info.value.actual == 2
    with pytest.raises(ExecutionNotFound):
        await store.save_execution(new_state("ghost"), expected_version=1)


async def test_executions_with_a_due_retry_are_found_by_time(store: PipelineStore) -> None:
    state = new_state("e1")
    await store.create_execution(state, pipeline_version=1, definition="{}")
    await store.create_execution(new_state("e2"), pipeline_version=1, definition="{}")
    waiting = advance(
        parse_definition(DEFINITION),
        state,
        JobFailed("A", 1, "Throttled", "Step.THROTTLING"),
        now=T0,
    ).state
    await store.save_execution(waiting, expected_version=1)
    assert await store.due_executions(T0 + timedelta(seconds=29)) == []
    assert await store.due_executions(T0 + timedelta(seconds=30)) == ["e1"]


async def test_running_executions_are_found_until_they_end(store: PipelineStore) -> None:
    definition = parse_definition(DEFINITION)
    first = new_state("e1")
    await store.create_execution(first, pipeline_version=1, definition="{}")
    await store.create_execution(
        new_state("e2", at=T0 + timedelta(1)), pipeline_version=1, definition="{}"
    )
    assert await store.running_executions() == ["e1", "e2"]
    a_done = advance(definition, first, JobSucceeded("A", 1, {}), now=T0).state
    ended = advance(definition, a_done, JobSucceeded("B", 1, {}), now=T0).state
    assert ended.status.terminal
    await store.save_execution(ended, expected_version=1)
    assert await store.running_executions() == ["e2"]


async def test_executions_are_listed_newest_first(store: PipelineStore) -> None:
    for i, execution_id in enumerate(["old", "mid", "new"]):
        await store.create_execution(
            new_state(execution_id, at=T0 + timedelta(minutes=i)),
            pipeline_version=1,
            definition="{}",
        )
    assert [e.execution_id for e in await store.list_executions("demo")] == ["new", "mid", "old"]
    assert await store.list_executions("other") == []


async def _five_executions(store: PipelineStore) -> None:
    """Executions a-e of "demo", b and c starting at the same moment."""
    starts = {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    for execution_id, minutes in starts.items():
        await store.create_execution(
            new_state(execution_id, at=T0 + timedelta(minutes=minutes)),
            pipeline_version=1,
            definition="{}",
        )


async def _pages_of_two(store: PipelineStore, *, oldest_first: bool = False) -> list[list[str]]:
    """The ids of "demo"'s executions, page by page, following each page's cursor."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.execution_page("demo", limit=2, cursor=cursor, oldest_first=oldest_first)
        pages.append([e.execution_id for e in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def test_executions_are_paged_newest_first_by_cursor(store: PipelineStore) -> None:
    """Five executions, two starting at the same moment (ordered by id), in pages of two;
    a cursor from one store's page means the same position to every store."""
    await _five_executions(store)
    assert await _pages_of_two(store) == [["e", "d"], ["c", "b"], ["a"]]
    assert [e.execution_id for e in await store.list_executions("demo")] == list("edcba")
    whole = await store.execution_page("demo", limit=5)
    assert (len(whole.items), whole.next_cursor) == (5, None)
    assert (await store.execution_page("other")).items == []
    with pytest.raises(InvalidCursor):
        await store.execution_page("demo", cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.execution_page("demo", limit=0)


async def test_executions_are_paged_oldest_first_and_from_a_moment(
    store: PipelineStore,
) -> None:
    """The other order pages the same way, and `cursor_at` starts a page at a moment
    (the executions started then included) in either order."""
    await _five_executions(store)
    assert await _pages_of_two(store, oldest_first=True) == [["a", "b"], ["c", "d"], ["e"]]
    at_one = T0 + timedelta(minutes=1)
    newest = await store.execution_page("demo", cursor=cursor_at(at_one))
    assert [e.execution_id for e in newest.items] == ["c", "b", "a"]
    oldest = await store.execution_page(
        "demo", cursor=cursor_at(at_one, oldest_first=True), oldest_first=True
    )
    assert [e.execution_id for e in oldest.items] == ["b", "c", "d", "e"]


async def test_the_newest_cached_run_per_key_is_kept(store: PipelineStore) -> None:
    newer = CachedRun(
        "e2", T0 + timedelta(hours=1), {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/2"}}
    )
    older = CachedRun("e1", T0, {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/1"}})
    await store.record_cached_run("demo", "k1", newer)
    await store.record_cached_run("demo", "k1", older)
    await store.record_cached_run("other", "k2", older)
    assert await store.cached_runs("demo", ["k1", "k2", "k3"]) == {"k1": newer}
    assert await store.cached_runs("demo", []) == {}


async def test_published_events_leave_the_outbox(store: PipelineStore) -> None:
    await store.create_execution(
        new_state("e1"), pipeline_version=1, definition="{}", outbox=[started_event("e1")]
    )
    await store.create_execution(
        new_state("e2"), pipeline_version=1, definition="{}", outbox=[started_event("e2")]
    )
    pending = await store.pending_outbox()
    assert [e.event.subject for e in pending] == ["e1", "e2"]
    assert pending[0].topic == PIPELINE_EXECUTIONS
    await store.mark_published([pending[0].entry_id])
    assert [e.event.subject for e in await store.pending_outbox()] == ["e2"]


async def test_the_sqlite_store_keeps_everything_across_a_restart(tmp_path: Path) -> None:
    first = SqlitePipelineStore(tmp_path / "p.db")
    await first.start()
    await first.put_pipeline("demo", team="search", definition="{}", description=None, now=T0)
    state = new_state("e1")
    await first.create_execution(state, pipeline_version=1, definition="{}")
    await first.close()
    second = SqlitePipelineStore(tmp_path / "p.db")
    await second.start()
    try:
        assert (await second.get_pipeline("demo")).team == "search"
        assert (await second.get_execution("e1")).state == state
    finally:
        await second.close()


async def test_schedules_change_only_from_the_version_read(store: PipelineStore) -> None:
    schedule = Schedule("nightly", "demo", "cron(0 2 * * ? *)", created_at=T0)
    made = await store.put_schedule(StoredSchedule(schedule, "search", 1), expected_version=None)
    with pytest.raises(ScheduleConflict):
        await store.put_schedule(StoredSchedule(schedule, "search", 1), expected_version=None)
    moved = replace(made, version=2, last_tick=T0, last_execution_id="sched-1")
    await store.put_schedule(moved, expected_version=1)
    with pytest.raises(ScheduleConflict):  # a second scheduler that read version 1
        await store.put_schedule(replace(made, version=2, last_tick=T0), expected_version=1)
    with pytest.raises(ScheduleConflict):  # another team
        await store.put_schedule(replace(moved, team="ads", version=3), expected_version=2)
    assert await store.get_schedule("nightly") == moved
    other = StoredSchedule(Schedule("hourly", "demo", "rate(1 hour)", created_at=T0), "ads", 1)
    await store.put_schedule(other, expected_version=None)
    assert [s.name for s in await store.list_schedules()] == ["hourly", "nightly"]
    assert [s.name for s in await store.list_schedules(team="ads")] == ["hourly"]
    await store.delete_schedule("hourly")
    with pytest.raises(ScheduleNotFound):
        await store.get_schedule("hourly")
    with pytest.raises(ScheduleNotFound):
        await store.put_schedule(replace(other, version=2), expected_version=1)


async def test_a_save_takes_the_events_of_a_wide_fan_out(store: PipelineStore) -> None:
    """Two events per branch of a 500-branch fan-out go in one save; more than any plan
    makes is refused before anything is written."""
    state = new_state("e1")
    await store.create_execution(state, pipeline_version=1, definition="{}")
    wide = [started_event("e1") for _ in range(1000)]
    await store.save_execution(state, expected_version=1, outbox=wide)
    assert len(await store.pending_outbox(limit=1000)) == 1000
    with pytest.raises(ValueError, match="at most 2008 events"):
        await store.save_execution(state, expected_version=2, outbox=[started_event("e1")] * 2009)
    assert (await store.get_execution("e1")).version == 2
