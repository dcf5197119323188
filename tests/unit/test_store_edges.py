"""Store adapters at their edges: AWS failures become stoker errors classified by code,
botocore retries a throttled request and the DynamoDB store retries what DynamoDB left
undone; SQLite writers in separate connections (as in separate processes) still get
exactly-one-wins."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import ValidationError

from stoker.adapters.aws import (
    AwsClients,
    AwsRequestRejected,
    AwsUnavailable,
    call,
    client_config,
)
from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.cursors import time_key
from stoker.core.errors import (
    IllegalTransition,
    InfrastructureUnavailable,
    StokerError,
    VersionConflict,
)
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.settings import Settings
from tests.contract.store_factories import drop_tables, dynamodb_settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _client_error(
    code: str, *, status: int = 400, cancellations: Sequence[str] = ()
) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": "from the test"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if cancellations:
        response["CancellationReasons"] = [{"Code": c} for c in cancellations]
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


async def _failing(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (_client_error("ThrottlingException"), AwsUnavailable, "ThrottlingException"),
        (
            _client_error("ProvisionedThroughputExceededException"),
            AwsUnavailable,
            "ProvisionedThroughputExceededException",
        ),
        (_client_error("SomethingNew", status=503), AwsUnavailable, "SomethingNew"),
        (
            _client_error("ConditionalCheckFailedException"),
            AwsRequestRejected,
            "ConditionalCheckFailedException",
        ),
        (_client_error("ValidationException"), AwsRequestRejected, "ValidationException"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            AwsUnavailable,
            "EndpointConnectionError",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_botocore_failures_become_stoker_errors_classified_by_code(
    error: Exception, kind: type[StokerError], code: str
) -> None:
    """`call` translates once: throttling, 5xx and transport failures are retriable
    AwsUnavailable; the rest AwsRequestRejected. Both carry the code; the cause is kept."""
    with pytest.raises(kind) as caught:
        await call("put_item", lambda: _failing(error))
    assert getattr(caught.value, "code", None) == code
    assert caught.value.retriable is (kind is AwsUnavailable)
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    ("cancellations", "retriable"),
    [
        (["None", "TransactionConflict"], True),
        (["ThrottlingError"], True),
        (["ConditionalCheckFailed", "TransactionConflict"], False),
        (["ValidationError"], False),
    ],
)
async def test_a_cancelled_transaction_is_retriable_only_when_it_collided(
    cancellations: list[str], retriable: bool
) -> None:
    """A transaction cancelled by a collision or throttling may pass on another try; one
    whose condition failed may not. The per-item codes travel on the error."""
    error = _client_error("TransactionCanceledException", cancellations=cancellations)
    with pytest.raises(StokerError) as caught:
        await call("transact", lambda: _failing(error))
    assert caught.value.retriable is retriable
    assert isinstance(caught.value, AwsUnavailable | AwsRequestRejected)
    assert caught.value.cancellations == tuple(cancellations)


class _ThrottlingDynamoDB:
    """A DynamoDB endpoint that answers every request with a ThrottlingException."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.requests += 1
        body = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "no"}
        return web.json_response(body, status=400, content_type="application/x-amz-json-1.0")


async def test_throttled_requests_are_retried_by_the_client_up_to_its_attempts() -> None:
    """botocore retries a throttled request (STOKER_AWS_MAX_ATTEMPTS tries in all) before
    the error reaches stoker, as a retriable AwsUnavailable."""
    endpoint = _ThrottlingDynamoDB()
    app = web.Application()
    app.router.add_post("/", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = Settings(dynamodb_endpoint=f"http://127.0.0.1:{port}", aws_max_attempts=2)
    clients = AwsClients(settings)
    try:
        db = await clients.dynamodb()
        with pytest.raises(AwsUnavailable, match="ThrottlingException") as caught:
            await call("get_item", lambda: db.get_item(TableName="t", Key={"pk": {"S": "a"}}))
        assert caught.value.retriable is True
        assert endpoint.requests == 2
    finally:
        await clients.close()
        await runner.cleanup()


def test_client_attempts_are_validated() -> None:
    """Zero attempts are refused, naming the value, in the config and in the settings."""
    with pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        client_config(max_attempts=0)
    with pytest.raises(ValidationError, match="aws_max_attempts"):
        Settings(aws_max_attempts=0)


async def test_unreachable_dynamodb_fails_fast_with_infrastructure_unavailable(
    dynamodb_endpoint: str,
) -> None:
    """A DynamoDB endpoint nobody listens on yields InfrastructureUnavailable, not a hang."""
    settings = Settings(
        dynamodb_endpoint="http://127.0.0.1:9", dynamodb_table_prefix="nobody", aws_max_attempts=1
    )
    store = DynamoDbJobStore(settings)
    with pytest.raises(InfrastructureUnavailable, match="unreachable"):
        await asyncio.wait_for(store.start(), timeout=30)
    await store.close()


async def test_a_rejected_request_is_not_retriable(dynamodb_endpoint: str) -> None:
    """A request DynamoDB refuses (an invalid table name) is a non-retriable error."""
    settings = Settings(dynamodb_endpoint=dynamodb_endpoint, dynamodb_table_prefix="x")
    store = DynamoDbJobStore(settings, table_prefix="bad name!")
    with pytest.raises(AwsRequestRejected) as caught:
        await store.start()
    assert caught.value.retriable is False
    assert caught.value.code == "ValidationException"
    await store.close()


def _job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, owner="alice", created_at=T0, updated_at=T0)


class _Flaky:
    """The real DynamoDB client, except that its first BatchGetItem answers only the first
    key and hands the rest back as unprocessed, and its first TransactWriteItems is
    cancelled by a collision, as DynamoDB may do under load."""

    def __init__(self, real: DynamoDBClient) -> None:
        self.real = real
        self.batch_requests: list[int] = []
        self.transactions = 0

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        self.batch_requests.append(len(request["Keys"]))
        if len(self.batch_requests) > 1:
            return dict(await self.real.batch_get_item(RequestItems=RequestItems))
        first, rest = request["Keys"][:1], request["Keys"][1:]
        answer = dict(
            await self.real.batch_get_item(RequestItems={table: {**request, "Keys": first}})
        )
        answer["UnprocessedKeys"] = {table: {**request, "Keys": rest}}
        return answer

    async def transact_write_items(self, **request: Any) -> dict[str, Any]:
        self.transactions += 1
        if self.transactions == 1:
            raise _client_error(
                "TransactionCanceledException", cancellations=["TransactionConflict"]
            )
        return dict(await self.real.transact_write_items(**request))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
async def flaky_store(dynamodb_endpoint: str) -> AsyncIterator[tuple[DynamoDbJobStore, _Flaky]]:
    """A DynamoDB store on its own table, handed a client that is flaky as described."""
    settings = dynamodb_settings(dynamodb_endpoint)
    clients = AwsClients(settings)
    client = _Flaky(await clients.dynamodb())
    store = DynamoDbJobStore(settings, client=client)  # type: ignore[arg-type]
    await store.start()
    try:
        yield store, client
    finally:
        await store.close()
        await clients.close()
        await drop_tables(dynamodb_endpoint, [store.table])


async def test_dynamodb_keys_left_unprocessed_are_asked_for_again(
    flaky_store: tuple[DynamoDbJobStore, _Flaky],
) -> None:
    """Keys a batch read left unprocessed are asked for again, and only those."""
    store, client = flaky_store
    for job_id in ("a", "b", "c"):
        await store.create(_job(job_id))
    found = await store.get_many(["a", "b", "c"])
    assert sorted(found) == ["a", "b", "c"]
    assert client.batch_requests == [3, 2]


async def test_a_transaction_that_collided_is_written_on_another_try(
    flaky_store: tuple[DynamoDbJobStore, _Flaky],
) -> None:
    """A create cancelled by a collision with another transaction is tried again (as a new
    transaction) and lands once, with its one history line."""
    store, client = flaky_store
    stored, created = await store.create(_job("a"))
    assert created is True
    assert client.transactions == 2
    assert await store.get("a") == stored
    assert len(await store.history("a")) == 1


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
