"""The embedded pipeline store: pipelines, executions, cached step runs and the execution
events' outbox in one SQLite file (beside the job store's), with the threading model of
`stoker.adapters.sqlite`.

An execution is saved with a conditional update on its version, in the same transaction as
its outbox events: of two engines planning the same event only one write lands, so only one
carries out the plan (starts the step's job), and a crash keeps the state and its events
together or neither.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from stoker.adapters.sqlite import SqliteDatabase, run_script
from stoker.core.cursors import time_key
from stoker.core.events import CloudEvent, decode_event
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    ExecutionPage,
    PipelineNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
    Tag,
    cached_run_from_json,
    cached_run_to_json,
    check_execution_outbox,
    next_pipeline,
    next_timer,
    retag,
    schedule_from_json,
    schedule_to_json,
    state_from_json,
    state_to_json,
    tags_and_versions_doc,
    tags_and_versions_of,
)
from stoker.core.pipelines.state import ExecutionState
from stoker.core.pipelines.store_rules import (
    execution_save_refusal,
    next_cursor,
    position_of,
    schedule_put_refusal,
)
from stoker.core.store_rules import StoreFailure, check_limit, event_bytes
from stoker.ports.store import OutboxEntry

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS pipelines (
        name    TEXT PRIMARY KEY,
        team    TEXT NOT NULL,
        record  TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS executions (
        execution_id     TEXT PRIMARY KEY,
        pipeline_name    TEXT NOT NULL,
        version          INTEGER NOT NULL,
        pipeline_version INTEGER NOT NULL,
        definition       TEXT NOT NULL,
        seq              INTEGER NOT NULL,
        started_key      TEXT NOT NULL,
        timer_key        TEXT,
        running          INTEGER NOT NULL,
        state            BLOB NOT NULL
    )
    """,
    # A pipeline's executions newest first, by the position every store pages by.
    "CREATE INDEX IF NOT EXISTS executions_by_pipeline_position"
    " ON executions (pipeline_name, started_key, execution_id)",
    # Partial: only running executions waiting for a retry carry a timer.
    "CREATE INDEX IF NOT EXISTS executions_by_timer ON executions (timer_key, execution_id)"
    " WHERE timer_key IS NOT NULL",
    # Partial: only executions that have not ended.
    "CREATE INDEX IF NOT EXISTS executions_running ON executions (started_key, seq)"
    " WHERE running = 1",
    """
    CREATE TABLE IF NOT EXISTS cached_runs (
        pipeline_name TEXT NOT NULL,
        cache_key     TEXT NOT NULL,
        ended_key     TEXT NOT NULL,
        run           BLOB NOT NULL,
        PRIMARY KEY (pipeline_name, cache_key)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS schedules (
        name    TEXT PRIMARY KEY,
        team    TEXT NOT NULL,
        version INTEGER NOT NULL,
        record  BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        topic    TEXT NOT NULL,
        event    BLOB NOT NULL,
        event_id TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS outbox_by_event ON outbox (event_id)",
)


def migrate(conn: sqlite3.Connection) -> None:
    run_script(conn, TABLES)


class SqlitePipelineStore:
    """Pipelines and their executions in one SQLite file; safe for several processes."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self._db = SqliteDatabase(
            path,
            label="sqlite pipeline store",
            migrate=migrate,
            failure=StoreFailure,
            synchronous="NORMAL",
            busy_timeout_ms=busy_timeout_ms,
        )

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    async def put_pipeline(
        self,
        name: str,
        *,
        team: str,
        definition: str,
        description: str | None,
        now: datetime,
        create_only: bool = False,
        tags: Sequence[Tag] | None = None,
    ) -> StoredPipeline:
        def op(db: sqlite3.Connection) -> StoredPipeline:
            # BEGIN IMMEDIATE holds the write lock from this read to the write: of two
            # creates of one name, the second reads the first's row (PipelineExists).
            row = db.execute("SELECT record FROM pipelines WHERE name = ?", (name,)).fetchone()
            record = next_pipeline(
                _pipeline(row[0]) if row else None,
                name,
                team=team,
                definition=definition,
                description=description,
                now=now,
                create_only=create_only,
                tags=tags,
            )
            db.execute(
                "INSERT INTO pipelines (name, team, record) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                (name, team, _pipeline_json(record)),
            )
            return record

        return await self._db.write("put_pipeline", op)

    async def tag_pipeline(
        self, name: str, *, add: Sequence[Tag] = (), remove: Sequence[str] = ()
    ) -> StoredPipeline:
        def op(db: sqlite3.Connection) -> StoredPipeline:
            row = db.execute("SELECT record FROM pipelines WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise PipelineNotFound(name)
            record = retag(_pipeline(row[0]), add=add, remove=remove)
            db.execute(
                "UPDATE pipelines SET record = ? WHERE name = ?", (_pipeline_json(record), name)
            )
            return record

        return await self._db.write("tag_pipeline", op)

    async def get_pipeline(self, name: str) -> StoredPipeline:
        def op(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT record FROM pipelines WHERE name = ?", (name,)).fetchone()
            return str(row[0]) if row else None

        text = await self._db.read("get_pipeline", op)
        if text is None:
            raise PipelineNotFound(name)
        return _pipeline(text)

    async def list_pipelines(self, *, team: str | None = None) -> list[StoredPipeline]:
        def op(db: sqlite3.Connection) -> list[str]:
            if team is None:
                rows = db.execute("SELECT record FROM pipelines ORDER BY name").fetchall()
            else:
                rows = db.execute(
                    "SELECT record FROM pipelines WHERE team = ? ORDER BY name", (team,)
                ).fetchall()
            return [str(r[0]) for r in rows]

        return [_pipeline(text) for text in await self._db.read("list_pipelines", op)]

    async def delete_pipeline(self, name: str) -> None:
        def op(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM pipelines WHERE name = ?", (name,)).rowcount

        if await self._db.write("delete_pipeline", op) != 1:
            raise PipelineNotFound(name)

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        pipeline_version: int,
        definition: str,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> tuple[StoredExecution, bool]:
        check_execution_outbox(outbox)
        stored = StoredExecution(state, 1, pipeline_version, definition)
        row = _execution_row(stored)
        events = _outbox_rows(outbox)

        def op(db: sqlite3.Connection) -> _Row | None:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM executions").fetchone()[0]
            inserted = db.execute(
                "INSERT INTO executions (execution_id, pipeline_name, version, pipeline_version,"
                " definition, seq, started_key, timer_key, running, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO NOTHING",
                (*row[:5], seq, *row[5:]),
            ).rowcount
            if inserted != 1:
                return _load(db, state.identity.execution_id)
            _insert_outbox(db, events)
            return None

        existing = await self._db.write("create_execution", op)
        if existing is None:
            return stored, True
        return _stored(existing), False

    async def get_execution(self, execution_id: str) -> StoredExecution:
        def op(db: sqlite3.Connection) -> _Row | None:
            row = db.execute(f"{_SELECT} WHERE execution_id = ?", (execution_id,)).fetchone()
            return _row(row) if row else None

        found = await self._db.read("get_execution", op)
        if found is None:
            raise ExecutionNotFound(execution_id)
        return _stored(found)

    async def list_executions(self, pipeline_name: str) -> list[StoredExecution]:
        def op(db: sqlite3.Connection) -> list[_Row]:
            rows = db.execute(
                f"{_SELECT} WHERE pipeline_name = ? ORDER BY started_key DESC, execution_id DESC",
                (pipeline_name,),
            ).fetchall()
            return [_row(r) for r in rows]

        return [_stored(row) for row in await self._db.read("list_executions", op)]

    async def execution_page(
        self,
        pipeline_name: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        check_limit(limit)
        # "~" sorts after every time key and "" before every one: no cursor starts at the
        # newest (or the oldest).
        start = ("", "") if oldest_first else ("~", "")
        started, after_id = position_of(cursor) if cursor is not None else start
        beyond, order = (">", "ASC") if oldest_first else ("<", "DESC")

        def op(db: sqlite3.Connection) -> list[_Row]:
            rows = db.execute(
                f"{_SELECT} WHERE pipeline_name = ?"
                f" AND (started_key {beyond} ? OR (started_key = ? AND execution_id {beyond} ?))"
                f" ORDER BY started_key {order}, execution_id {order} LIMIT ?",
                (pipeline_name, started, started, after_id, limit + 1),
            ).fetchall()
            return [_row(r) for r in rows]

        found = [_stored(row) for row in await self._db.read("execution_page", op)]
        return ExecutionPage(found[:limit], next_cursor(found, limit))

    async def save_execution(
        self,
        state: ExecutionState,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> StoredExecution:
        check_execution_outbox(outbox)
        execution_id = state.identity.execution_id
        raw = state_to_json(state)
        due = next_timer(state)
        timer = time_key(due) if due else None
        running = 0 if state.status.terminal else 1
        events = _outbox_rows(outbox)

        def op(db: sqlite3.Connection) -> _Row:
            # The version condition and the write are one statement: no other writer can
            # come between them, in this process or another.
            updated = db.execute(
                "UPDATE executions SET version = version + 1, timer_key = ?, running = ?,"
                " state = ? WHERE execution_id = ? AND version = ?",
                (timer, running, raw, execution_id, expected_version),
            ).rowcount
            if updated != 1:
                row = db.execute(
                    "SELECT version FROM executions WHERE execution_id = ?", (execution_id,)
                ).fetchone()
                found = int(row[0]) if row else None
                raise execution_save_refusal(
                    execution_id, expected_version, found
                ) or ExecutionConflict(execution_id, expected_version, found)
            _insert_outbox(db, events)
            return _load(db, execution_id)

        saved = await self._db.write("save_execution", op)
        return StoredExecution(state, saved[0], saved[2], saved[3])

    async def running_executions(self, limit: int = 1000) -> list[str]:
        check_limit(limit)

        def op(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT execution_id FROM executions WHERE running = 1"
                " ORDER BY started_key, seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._db.read("running_executions", op)

    async def due_executions(self, now: datetime, limit: int = 100) -> list[str]:
        check_limit(limit)

        def op(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT execution_id FROM executions WHERE timer_key IS NOT NULL"
                " AND timer_key <= ? ORDER BY timer_key, execution_id LIMIT ?",
                (time_key(now), limit),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._db.read("due_executions", op)

    async def record_cached_run(self, pipeline_name: str, key: str, run: CachedRun) -> None:
        raw, ended = cached_run_to_json(run), time_key(run.ended_at)

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO cached_runs (pipeline_name, cache_key, ended_key, run)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (pipeline_name, cache_key) DO UPDATE"
                " SET ended_key = excluded.ended_key, run = excluded.run"
                " WHERE excluded.ended_key >= cached_runs.ended_key",
                (pipeline_name, key, ended, raw),
            )

        await self._db.write("record_cached_run", op)

    async def cached_runs(self, pipeline_name: str, keys: Sequence[str]) -> dict[str, CachedRun]:
        if not keys:
            return {}
        wanted = json.dumps(list(dict.fromkeys(keys)))

        def op(db: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = db.execute(
                "SELECT cache_key, run FROM cached_runs WHERE pipeline_name = ?"
                " AND cache_key IN (SELECT value FROM json_each(?))",
                (pipeline_name, wanted),
            ).fetchall()
            return [(str(r[0]), bytes(r[1])) for r in rows]

        rows = await self._db.read("cached_runs", op)
        return {key: cached_run_from_json(raw) for key, raw in rows}

    async def put_schedule(
        self, stored: StoredSchedule, *, expected_version: int | None
    ) -> StoredSchedule:
        raw, name = schedule_to_json(stored), stored.name

        def op(db: sqlite3.Connection) -> None:
            if expected_version is None:
                written = db.execute(
                    "INSERT INTO schedules (name, team, version, record) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, stored.team, stored.version, raw),
                ).rowcount
            else:
                # The version condition and the write in one statement (see save_execution).
                written = db.execute(
                    "UPDATE schedules SET version = ?, record = ?"
                    " WHERE name = ? AND version = ? AND team = ?",
                    (stored.version, raw, name, expected_version, stored.team),
                ).rowcount
            if written != 1:
                row = db.execute(
                    "SELECT version, team FROM schedules WHERE name = ?", (name,)
                ).fetchone()
                found = (int(row[0]), str(row[1])) if row else None
                raise schedule_put_refusal(
                    name, stored.team, expected_version, found
                ) or ScheduleConflict(name)

        await self._db.write("put_schedule", op)
        return stored

    async def get_schedule(self, name: str) -> StoredSchedule:
        def op(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT record FROM schedules WHERE name = ?", (name,)).fetchone()
            return bytes(row[0]) if row else None

        raw = await self._db.read("get_schedule", op)
        if raw is None:
            raise ScheduleNotFound(name)
        return schedule_from_json(raw)

    async def list_schedules(self, *, team: str | None = None) -> list[StoredSchedule]:
        def op(db: sqlite3.Connection) -> list[bytes]:
            if team is None:
                rows = db.execute("SELECT record FROM schedules ORDER BY name").fetchall()
            else:
                rows = db.execute(
                    "SELECT record FROM schedules WHERE team = ? ORDER BY name", (team,)
                ).fetchall()
            return [bytes(r[0]) for r in rows]

        return [schedule_from_json(raw) for raw in await self._db.read("list_schedules", op)]

    async def delete_schedule(self, name: str) -> None:
        def op(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount

        if await self._db.write("delete_schedule", op) != 1:
            raise ScheduleNotFound(name)

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)

        def op(db: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = db.execute(
                "SELECT topic, event FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [(str(r[0]), bytes(r[1])) for r in rows]

        entries = []
        for topic, raw in await self._db.read("pending_outbox", op):
            event = decode_event(raw)
            entries.append(OutboxEntry(entry_id=event.id, topic=topic, event=event))
        return entries

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        ids = json.dumps(list(dict.fromkeys(entry_ids)))

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM outbox WHERE event_id IN (SELECT value FROM json_each(?))", (ids,)
            )

        await self._db.write("mark_published", op)


def _pipeline_json(record: StoredPipeline) -> str:
    return orjson.dumps(
        {
            "name": record.name,
            "team": record.team,
            "definition": record.definition,
            "version": record.version,
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "description": record.description,
            **tags_and_versions_doc(record),
        }
    ).decode()


def _pipeline(text: str) -> StoredPipeline:
    """A record as stored; one stored before tags and versions were kept has none."""
    doc = orjson.loads(text)
    tags, versions = tags_and_versions_of(doc)
    return StoredPipeline(
        name=doc["name"],
        team=doc["team"],
        definition=doc["definition"],
        version=int(doc["version"]),
        created_at=datetime.fromisoformat(doc["created_at"]),
        updated_at=datetime.fromisoformat(doc["updated_at"]),
        description=doc["description"],
        tags=tags,
        versions=versions,
    )


ExecutionRow = tuple[str, str, int, int, str, str, str | None, int, bytes]
_Row = tuple[int, bytes, int, str]
"""version, state, pipeline_version, definition"""
_SELECT = "SELECT version, state, pipeline_version, definition FROM executions"


def _execution_row(stored: StoredExecution) -> ExecutionRow:
    timer = stored.next_timer
    return (
        stored.execution_id,
        stored.pipeline_name,
        stored.version,
        stored.pipeline_version,
        stored.definition,
        time_key(stored.state.started_at),
        time_key(timer) if timer else None,
        0 if stored.status.terminal else 1,
        state_to_json(stored.state),
    )


def _load(db: sqlite3.Connection, execution_id: str) -> _Row:
    return _row(db.execute(f"{_SELECT} WHERE execution_id = ?", (execution_id,)).fetchone())


def _row(row: Any) -> _Row:
    version, state, pipeline_version, definition = row
    return int(version), bytes(state), int(pipeline_version), str(definition)


def _stored(row: _Row) -> StoredExecution:
    version, raw, pipeline_version, definition = row
    return StoredExecution(state_from_json(raw), version, pipeline_version, definition)


OutboxRow = tuple[str, bytes, str]


def _outbox_rows(outbox: Sequence[tuple[str, CloudEvent]]) -> list[OutboxRow]:
    return [(topic, event_bytes(event), event.id) for topic, event in outbox]


def _insert_outbox(db: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    if rows:
        db.executemany("INSERT INTO outbox (topic, event, event_id) VALUES (?, ?, ?)", rows)
