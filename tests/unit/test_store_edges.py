"""Store adapters at their edges: outages become InfrastructureUnavailable, retried with
backoff and logged; SQLite writers in separate connections (as in separate processes)
still get exactly-one-wins."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
from botocore.exceptions import ClientError

from stoker.adapters.aws import AwsRequestRejected, RetryConfig, call
from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.errors import IllegalTransition, InfrastructureUnavailable, VersionConflict
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.store_rules import time_key
from stoker.settings import Settings
from tests.contract.store_factories import drop_tables, dynamodb_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FAST = RetryConfig(attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "from the test"}}, "PutItem")


async def test_transient_aws_errors_are_retried_with_a_log_line_per_try() -> None:
    """A throttled call is retried with backoff, each retry logged, and then succeeds."""
    outcomes: list[Exception | None] = [
        _client_error("ProvisionedThroughputExceededException"),
        _client_error("ThrottlingException"),
        None,
    ]
    waits: list[float] = []

    async def operation() -> str:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return "done"

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with structlog.testing.capture_logs() as logs:
        assert await call("put_item", operation, retry=FAST, sleep=sleep) == "done"
    assert len(waits) == 2
    assert [entry["event"] for entry in logs] == ["aws call failed; retrying"] * 2
    assert all(entry["operation"] == "put_item" for entry in logs)


async def test_transient_aws_errors_that_persist_become_infrastructure_unavailable() -> None:
    """After the last try a throttling error surfaces as InfrastructureUnavailable."""

    async def operation() -> None:
        raise _client_error("ThrottlingException")

    async def sleep(_: float) -> None:
        return None

    with pytest.raises(InfrastructureUnavailable, match="ThrottlingException") as caught:
        await call("put_item", operation, retry=FAST, sleep=sleep)
    assert caught.value.retriable is True
    assert isinstance(caught.value.__cause__, ClientError)


async def test_other_client_errors_pass_through_for_the_adapter_to_read() -> None:
    """A ConditionalCheckFailed is not retried: the adapter decides what it means."""
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise _client_error("ConditionalCheckFailedException")

    with pytest.raises(ClientError):
        await call("put_item", operation, retry=FAST)
    assert calls == 1


def test_retry_config_rejects_nonsense() -> None:
    """Zero attempts or a cap below the first backoff are refused, naming the values."""
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        RetryConfig(attempts=0)
    with pytest.raises(ValueError, match=r"0\.5 and 0\.1"):
        RetryConfig(initial_backoff_s=0.5, max_backoff_s=0.1)


async def test_unreachable_dynamodb_fails_fast_with_infrastructure_unavailable(
    dynamodb_endpoint: str,
) -> None:
    """A DynamoDB endpoint nobody listens on yields InfrastructureUnavailable, not a hang."""
    settings = Settings(dynamodb_endpoint="http://127.0.0.1:9", dynamodb_table_prefix="nobody")
    store = DynamoDbJobStore(settings, retry=FAST)
    with pytest.raises(InfrastructureUnavailable, match="unreachable"):
        await asyncio.wait_for(store.start(), timeout=30)
    await store.close()


async def test_a_rejected_request_is_not_retriable(dynamodb_endpoint: str) -> None:
    """A request DynamoDB refuses (an invalid table name) is a non-retriable error."""
    settings = Settings(dynamodb_endpoint=dynamodb_endpoint, dynamodb_table_prefix="x")
    store = DynamoDbJobStore(settings, table_prefix="bad name!", retry=FAST)
    with pytest.raises(AwsRequestRejected) as caught:
        await store.start()
    assert caught.value.retriable is False
    await store.close()


def _job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, owner="alice", created_at=T0, updated_at=T0)


class _LeavingKeysUnprocessed:
    """The real DynamoDB client, except that its first BatchGetItem answers only the first
    key and hands the rest back as unprocessed, as DynamoDB may under load."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.batch_requests: list[int] = []

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        self.batch_requests.append(len(request["Keys"]))
        if len(self.batch_requests) > 1:
            return dict(await self._real.batch_get_item(RequestItems=RequestItems))
        first, rest = request["Keys"][:1], request["Keys"][1:]
        answer = dict(
            await self._real.batch_get_item(RequestItems={table: {**request, "Keys": first}})
        )
        answer["UnprocessedKeys"] = {table: {**request, "Keys": rest}}
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_dynamodb_keys_left_unprocessed_are_asked_for_again(dynamodb_endpoint: str) -> None:
    store = DynamoDbJobStore(dynamodb_settings(dynamodb_endpoint), retry=FAST)
    await store.start()
    try:
        for job_id in ("a", "b", "c"):
            await store.create(JobRecord(job_id=job_id, owner="o", created_at=T0, updated_at=T0))
        client = _LeavingKeysUnprocessed(store._db)
        store._db = client  # type: ignore[assignment]
        found = await store.get_many(["a", "b", "c"])
        assert sorted(found) == ["a", "b", "c"]
        assert client.batch_requests == [3, 2]
    finally:
        store._db = getattr(store._db, "_real", store._db)
        await store.close()
        await drop_tables(dynamodb_endpoint, [store.table])


async def test_sqlite_writers_on_separate_connections_exactly_one_wins(tmp_path: Path) -> None:
    """Two stores on one file (like two processes): same expected version, one wins."""
    path = tmp_path / "jobs.db"
    first, second = SqliteJobStore(path), SqliteJobStore(path)
    await first.start()
    await second.start()
    try:
        await first.create(_job("j1"))
        outcomes = await asyncio.gather(
            first.transition(
                "j1", JobChange(to_status=JobStatus.LAUNCHING, at=T0), expected_version=1
            ),
            second.transition(
                "j1", JobChange(to_status=JobStatus.STOPPING, at=T0), expected_version=1
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(o, JobRecord) for o in outcomes) == 1
        assert sum(isinstance(o, VersionConflict) for o in outcomes) == 1
        assert len(await second.history("j1")) == 2
    finally:
        await first.close()
        await second.close()


async def test_sqlite_refused_writes_in_a_group_write_nothing_and_spare_the_rest(
    tmp_path: Path,
) -> None:
    """Writes queued together share one transaction. A refused one (stale version, illegal
    transition) leaves no row, history line or outbox event; the others commit."""
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.start()
    try:
        for job_id in ("ok1", "stale", "illegal", "ok2"):
            await store.create(_job(job_id))

        def moved(job_id: str, to: JobStatus, expected: int) -> Awaitable[JobRecord]:
            event = CloudEvent.wrap(
                JobStatusChanged(
                    job_id=job_id,
                    owner="alice",
                    version=expected + 1,
                    from_status=JobStatus.NEW,
                    to_status=to,
                    attempt=0,
                ),
                time=T0,
            )
            return store.transition(
                job_id,
                JobChange(to_status=to, at=T0),
                expected_version=expected,
                outbox=[("lifecycle", event)],
            )

        outcomes = await asyncio.gather(
            moved("ok1", JobStatus.LAUNCHING, 1),
            moved("stale", JobStatus.LAUNCHING, 7),
            moved("illegal", JobStatus.COMPLETED, 1),
            moved("ok2", JobStatus.LAUNCHING, 1),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], JobRecord)
        assert isinstance(outcomes[3], JobRecord)
        assert isinstance(outcomes[1], VersionConflict)
        assert isinstance(outcomes[2], IllegalTransition)
        for job_id, status, lines in [
            ("ok1", JobStatus.LAUNCHING, 2),
            ("stale", JobStatus.NEW, 1),
            ("illegal", JobStatus.NEW, 1),
            ("ok2", JobStatus.LAUNCHING, 2),
        ]:
            assert (await store.get(job_id)).status is status
            assert len(await store.history(job_id)) == lines
        pending = {entry.event.subject for entry in await store.pending_outbox()}
        assert pending == {"ok1", "ok2"}
    finally:
        await store.close()


async def test_sqlite_locked_by_another_writer_is_infrastructure_unavailable(
    tmp_path: Path,
) -> None:
    """When another process holds the write lock past the busy timeout, a write fails with
    InfrastructureUnavailable (retriable) and leaves nothing behind."""
    path = tmp_path / "jobs.db"
    store = SqliteJobStore(path, busy_timeout_ms=20)
    await store.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(InfrastructureUnavailable, match="locked"):
            await store.create(_job("j1"))
        blocker.execute("ROLLBACK")
        stored, created = await store.create(_job("j1"))
        assert created is True
        assert stored == await store.get("j1")
    finally:
        blocker.close()
        await store.close()


async def test_sqlite_file_from_before_event_id_outbox_entries_is_migrated(
    tmp_path: Path,
) -> None:
    """A file whose outbox has no event_id column (written before entries were named by
    event id) opens, names its pending events by id, and lets them be marked published."""
    path = tmp_path / "jobs.db"
    event = CloudEvent.wrap(
        JobStatusChanged(
            job_id="j1",
            owner="alice",
            version=1,
            from_status=None,
            to_status=JobStatus.NEW,
            attempt=0,
        ),
        time=T0,
    )
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
        " event BLOB NOT NULL)"
    )
    old.execute("INSERT INTO outbox (topic, event) VALUES (?, ?)", ("lifecycle", event.to_json()))
    old.close()
    store = SqliteJobStore(path)
    await store.start()
    try:
        pending = await store.pending_outbox()
        assert [(e.entry_id, e.event) for e in pending] == [(event.id, event)]
        await store.mark_published([event.id])
        assert await store.pending_outbox() == []
    finally:
        await store.close()


def test_time_keys_are_utc_with_microseconds_and_sort_as_text() -> None:
    """Naive times count as UTC, others are converted; the text sorts like the times."""
    plus_two = timezone(timedelta(hours=2))
    assert time_key(datetime(2026, 3, 1, 12, tzinfo=UTC)) == "2026-03-01T12:00:00.000000Z"
    assert time_key(datetime(2026, 3, 1, 12, 0, 0, 5)) == "2026-03-01T12:00:00.000005Z"
    assert time_key(datetime(2026, 3, 1, 12, tzinfo=plus_two)) == "2026-03-01T10:00:00.000000Z"
    moments = [datetime(2026, 3, 1, 9, 59, 59, 999_999, tzinfo=UTC), T0.replace(hour=10)]
    moments.append(datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=plus_two))
    assert sorted(moments) == sorted(moments, key=time_key)
