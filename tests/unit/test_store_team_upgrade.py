"""Stores written before jobs had teams open, and their jobs are the default team's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from aiobotocore.session import get_session

from stoker.adapters.store import layout
from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.cursors import time_key
from stoker.core.job import JobRecord, JobStatus
from stoker.settings import Settings
from tests.contract.store_factories import drop_tables, dynamodb_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
OLD_RECORD = (
    '{"job_id": "old-1", "owner": "alice", "status": "New", "version": 1, "attempt": 0,'
    ' "priority": 0, "spec": {}, "created_at": "2026-03-01T00:00:00Z",'
    ' "updated_at": "2026-03-01T00:00:00Z", "due_at": null, "failure_reason": null,'
    ' "details": {}}'
)
"""A job as stores wrote it before jobs had a team."""


async def test_sqlite_file_from_before_teams_lists_its_jobs_as_the_default_teams(
    tmp_path: Path,
) -> None:
    """A jobs table without the team column gains it; old jobs are the default team's."""
    path = tmp_path / "jobs.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL,"
        " version INTEGER NOT NULL, created_key TEXT NOT NULL, due_key TEXT,"
        " record TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO jobs VALUES ('old-1', 'alice', 'New', 1, ?, NULL, ?)",
        (time_key(T0), OLD_RECORD),
    )
    old.close()
    store = SqliteJobStore(path)
    await store.start()
    try:
        assert (await store.get("old-1")).team == "default"
        listed = await store.list_jobs(team="default", status=JobStatus.NEW)
        assert [j.job_id for j in listed.items] == ["old-1"]
        assert (await store.list_jobs(team="search")).items == []
    finally:
        await store.close()


async def test_dynamodb_table_from_before_teams_gains_the_team_indexes(
    dynamodb_endpoint: str,
) -> None:
    """A job table made without the team indexes gets them when a store starts, and its
    job items are put into them as the default team's; a second start keeps both teams apart."""
    settings: Settings = dynamodb_settings(dynamodb_endpoint)
    table = layout.job_table_name(settings.dynamodb_table_prefix)
    old_indexes = [
        index
        for index in layout.JOB_TABLE_INDEXES
        if index["IndexName"]
        not in {layout.INDEX_TEAM, layout.INDEX_TEAM_STATUS, layout.INDEX_TEAM_OWNER}
    ]
    keys = ["pk", "sk", "s_pk", "o_pk", "os_pk", "c_sk", "d_pk", "d_sk", "p_pk", "p_sk"]
    async with get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=dynamodb_endpoint
    ) as client:
        await client.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            GlobalSecondaryIndexes=old_indexes,  # type: ignore[arg-type]
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
            BillingMode="PAY_PER_REQUEST",
        )
        await client.put_item(
            TableName=table,
            Item={
                "pk": {"S": layout.job_pk("old-1")},
                "sk": {"S": layout.JOB_SK},
                "kind": {"S": layout.KIND_JOB},
                "status": {"S": "New"},
                "owner": {"S": "alice"},
                "version": {"N": "1"},
                "record": {"S": OLD_RECORD},
                "s_pk": {"S": layout.status_pk("New")},
                "o_pk": {"S": layout.owner_pk("alice")},
                "os_pk": {"S": layout.owner_status_pk("alice", "New")},
                "c_sk": {"S": f"{time_key(T0)}#old-1"},
            },
        )
    store = DynamoDbJobStore(settings)
    try:
        await store.start()
        old = await store.get("old-1")
        assert old.team == "default"
        for filters in ({}, {"status": JobStatus.NEW}, {"owner": "alice"}):
            page = await store.list_jobs(team="default", **filters)  # type: ignore[arg-type]
            assert [j.job_id for j in page.items] == ["old-1"], filters
        new = JobRecord(job_id="new-1", owner="bo", team="ads", created_at=T0, updated_at=T0)
        await store.create(new)
        await store.close()
        await store.start()
        assert [j.job_id for j in (await store.list_jobs(team="ads")).items] == ["new-1"]
        assert [j.job_id for j in (await store.list_jobs(team="default")).items] == ["old-1"]
    finally:
        await store.close()
        await drop_tables(dynamodb_endpoint, [table, store.tokens.table])
