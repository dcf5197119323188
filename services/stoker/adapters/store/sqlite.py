"""The embedded store: jobs, their history, the outbox and the API tokens in one SQLite file.

How statements run is `stoker.adapters.sqlite` (the same for every SQLite file stoker
writes): the writes of one round of the event loop commit together in one transaction, on
the loop while the file's write lock is free and on its writer thread otherwise; reads go
to a reader thread with a read-only connection of its own, so they never queue behind
writes; a third thread checkpoints the log after writes. The schema is `sqlite_schema`.
This module is the JobStore and TokenStore ports' operations.

A job, its history line and its outbox events commit in one transaction, so a crash keeps
all of them or none. Writes take the file's write lock up front (`BEGIN IMMEDIATE`), which
makes read-check-write one atomic step even when several processes share the file.

A write shares its transaction with the other writes of its group and has no savepoint of
its own. So every write decides and prepares everything before its first statement, and
its statements either all succeed or raise an SQLite error, which aborts the whole group.
A write refused for its own reasons (a version conflict, an illegal transition) has then
written nothing, and the group's other writes stand.

Rows are built and records parsed on the event loop, not on the store's threads: there
every bit of Python waits for the GIL while the loop is busy, and holds up the file's
write lock meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from stoker.adapters.sqlite import SqliteDatabase, WalCheckpoint
from stoker.adapters.store.sqlite_schema import migrate
from stoker.adapters.store.sqlite_slots import SqliteSlots
from stoker.core.cursors import decode_cursor, encode_cursor, time_key
from stoker.core.errors import JobNotFound, VersionConflict
from stoker.core.events import CloudEvent, decode_event
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.store_rules import (
    StoreFailure,
    check_limit,
    check_outbox,
    creation_line,
    event_bytes,
    job_position,
    plan_from_copy,
    plan_transition,
    records_history,
    trend_days,
)
from stoker.core.tokens import TokenNotFound, TokenRecord
from stoker.core.trends import Measure, Trends, fold, measures
from stoker.ports.store import OutboxEntry, Page

CHECKPOINT_INTERVAL_S = 0.5
"""After a write, the log is checkpointed within this long: one checkpoint for the burst."""


class SqliteJobStore:
    """Jobs, history, outbox and tokens in one SQLite file; safe for several processes.

    busy_timeout_ms: how long a write waits for the file's write lock held by another
        process before its group is tried again (and at last fails with
        `InfrastructureUnavailable`).
    checkpoint_interval_s: a write reaches the database file (out of the write-ahead log)
        within this long.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self._db = SqliteDatabase(
            path,
            label="sqlite store",
            migrate=migrate,
            failure=StoreFailure,
            # NORMAL in WAL mode survives a killed process; only a power loss can drop the
            # last commits.
            synchronous="NORMAL",
            busy_timeout_ms=busy_timeout_ms,
            checkpoint_interval_s=checkpoint_interval_s,
        )
        slots = SqliteSlots(self._db)
        # The CapacityStore operations (slots and leases) are `sqlite_slots`'.
        self.claim_slots = slots.claim_slots
        self.release_slots = slots.release_slots
        self.held_slots = slots.held_slots
        self.take_lease = slots.take_lease
        self.leases = slots.leases
        self.drop_lease = slots.drop_lease

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    async def checkpoint(self) -> WalCheckpoint:
        """Copy the write-ahead log into the database file now (the store does it by itself
        within `checkpoint_interval_s` of a write)."""
        return await self._db.checkpoint()

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        check_outbox(outbox)
        line = creation_line(job)
        job_row, history, events = _job_row(job), _history_row(line), _outbox_rows(outbox)
        counts = _count_rows(job, measures(None, job, line))

        def op(db: sqlite3.Connection) -> str | None:
            # A new job (the usual case) costs no read first: the insert says if it was.
            inserted = db.execute(
                "INSERT INTO jobs"
                " (job_id, owner, team, created_key, status, version, due_key, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
                job_row,
            ).rowcount
            if inserted != 1:
                return _load_text(db, job.job_id)
            _insert_history(db, history)
            _add_counts(db, counts)
            _insert_outbox(db, events)
            return None

        existing = await self._db.write("create", op)
        if existing is not None:
            return JobRecord.model_validate_json(existing), False
        return job, True

    async def get(self, job_id: str) -> JobRecord:
        text = await self._db.read("get", lambda db: _load_text(db, job_id))
        return JobRecord.model_validate_json(text)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        # The ids go in as one JSON array: one statement (prepared once) for any number of
        # ids, and no limit on parameters; SQLite still looks each up by primary key.
        ids = json.dumps(list(job_ids))

        def op(db: sqlite3.Connection) -> list[tuple[str, str]]:
            return db.execute(
                "SELECT job_id, record FROM jobs WHERE job_id IN (SELECT value FROM json_each(?))",
                (ids,),
            ).fetchall()

        rows = await self._db.read("get_many", op)
        return {job_id: JobRecord.model_validate_json(text) for job_id, text in rows}

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        check_outbox(outbox)
        rows = _outbox_rows(outbox)
        # With a caller's copy that may serve (see `plan_from_copy`) the change is planned
        # here, on the loop; otherwise the writer plans it on the stored row.
        from_copy = plan_from_copy(current, job_id, change, expected_version)
        planned = _Planned.of(current, *from_copy) if current and from_copy else None

        def op(db: sqlite3.Connection) -> _Planned:
            if planned is not None:
                plan = planned
            else:
                stored = _load(db, job_id)
                plan = _Planned.of(stored, *plan_transition(stored, change, expected_version))
            # Only the columns a transition changes: SQLite then leaves the indexes on owner
            # and creation time alone.
            written = db.execute(
                "UPDATE jobs SET status = ?, version = ?, due_key = ?, record = ?"
                " WHERE job_id = ? AND version = ?",
                (*plan.columns, job_id, expected_version),
            ).rowcount
            if written != 1:  # moved by another writer meanwhile, or gone: say which
                raise VersionConflict(job_id, expected_version, _load(db, job_id).version)
            if plan.history is not None:
                _insert_history(db, plan.history)
            _add_counts(db, plan.counts)
            _insert_outbox(db, rows)
            return plan

        return (await self._db.write("transition", op)).updated

    async def history(self, job_id: str) -> list[Transition]:
        def op(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT line FROM history WHERE job_id = ? ORDER BY version", (job_id,)
            ).fetchall()
            if not rows:
                raise JobNotFound(job_id)
            return [str(row[0]) for row in rows]

        lines = await self._db.read("history", op)
        return [Transition.model_validate_json(line) for line in lines]

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        check_limit(limit)
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if team is not None:
            where.append("team = ?")
            params.append(team)
        if cursor is not None:
            position = decode_cursor(cursor)
            where.append("(created_key, job_id) < (?, ?)")
            params.extend([str(position.get("t")), str(position.get("id"))])
        sql = "SELECT record FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_key DESC, job_id DESC LIMIT ?"
        params.append(limit + 1)

        def op(db: sqlite3.Connection) -> list[tuple[str]]:
            return db.execute(sql, params).fetchall()

        found = [
            JobRecord.model_validate_json(row[0]) for row in await self._db.read("list_jobs", op)
        ]
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            created, job_id = job_position(items[-1])
            next_cursor = encode_cursor({"t": created, "id": job_id})
        return Page(items=items, next_cursor=next_cursor)

    async def due(self, now: datetime, limit: int = 100) -> list[JobRecord]:
        check_limit(limit)

        def op(db: sqlite3.Connection) -> list[tuple[str]]:
            return db.execute(
                "SELECT record FROM jobs WHERE due_key IS NOT NULL AND due_key <= ?"
                " ORDER BY due_key, job_id LIMIT ?",
                (time_key(now), limit),
            ).fetchall()

        return [JobRecord.model_validate_json(row[0]) for row in await self._db.read("due", op)]

    async def trends(self, since: datetime, until: datetime, *, team: str | None = None) -> Trends:
        first, last = trend_days(since, until)
        low, high = first.isoformat(), last.isoformat()

        def op(db: sqlite3.Connection) -> list[tuple[str, str, str, str, int]]:
            # Scoped to a team, the primary key's prefix reads only that team's counters.
            if team is not None:
                return db.execute(
                    "SELECT day, team, kind, name, amount FROM trend_counts"
                    " WHERE team = ? AND day BETWEEN ? AND ?",
                    (team, low, high),
                ).fetchall()
            return db.execute(
                "SELECT day, team, kind, name, amount FROM trend_counts WHERE day BETWEEN ? AND ?",
                (low, high),
            ).fetchall()

        rows = await self._db.read("trends", op)
        return fold(
            (date.fromisoformat(day), owner_team, kind, name, int(amount))
            for day, owner_team, kind, name, amount in rows
        )

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)

        def op(db: sqlite3.Connection) -> list[tuple[str, bytes]]:
            return db.execute(
                "SELECT topic, event FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()

        entries = []
        for topic, raw in await self._db.read("pending_outbox", op):
            event = decode_event(bytes(raw))
            entries.append(OutboxEntry(entry_id=event.id, topic=topic, event=event))
        return entries

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        # One statement for the whole batch (the ids as one JSON array), not one per id.
        ids = json.dumps(list(dict.fromkeys(entry_ids)))

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM outbox WHERE event_id IN (SELECT value FROM json_each(?))", (ids,)
            )

        await self._db.write("mark_published", op)

    # -- tokens ---------------------------------------------------------------------------

    async def put_token(self, token: TokenRecord) -> None:
        row = (token.token_id, time_key(token.created_at), token.model_dump_json())

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO tokens (token_id, created_key, record) VALUES (?, ?, ?)"
                " ON CONFLICT (token_id) DO NOTHING",
                row,
            )

        await self._db.write("put_token", op)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        def op(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT record FROM tokens WHERE token_id = ?", (token_id,)).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.read("get_token", op)
        return None if text is None else TokenRecord.model_validate_json(text)

    async def list_tokens(self) -> list[TokenRecord]:
        def op(db: sqlite3.Connection) -> list[tuple[str]]:
            return db.execute("SELECT record FROM tokens ORDER BY created_key, token_id").fetchall()

        rows = await self._db.read("list_tokens", op)
        return [TokenRecord.model_validate_json(row[0]) for row in rows]

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        def op(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT record FROM tokens WHERE token_id = ?", (token_id,)).fetchone()
            if row is None:
                raise TokenNotFound(token_id)
            token = TokenRecord.model_validate_json(row[0])
            if token.revoked_at is not None:
                return str(row[0])
            text = token.model_copy(update={"revoked_at": at}).model_dump_json()
            db.execute("UPDATE tokens SET record = ? WHERE token_id = ?", (text, token_id))
            return text

        return TokenRecord.model_validate_json(await self._db.write("revoke_token", op))


def _job_row(job: JobRecord) -> tuple[str, str, str, str, str, int, str | None, str]:
    """job_id, owner, team, created_key, then the columns a transition changes."""
    return (job.job_id, job.owner, job.team, time_key(job.created_at), *_changed_columns(job))


def _changed_columns(job: JobRecord) -> tuple[str, int, str | None, str]:
    """status, version, due_key, record: what a transition writes."""
    due = (
        time_key(job.due_at)
        if job.status is JobStatus.RETRY_SCHEDULED and job.due_at is not None
        else None
    )
    return job.status.value, job.version, due, job.model_dump_json()


HistoryRow = tuple[str, int, str, str, str | None, str]
CountRow = tuple[str, str, str, str, int]
"""team, day, kind, name, amount."""
OutboxRow = tuple[str, bytes, str]


@dataclass(frozen=True, slots=True)
class _Planned:
    """A transition ready to write: the new record, its changed columns and history row."""

    updated: JobRecord
    columns: tuple[str, int, str | None, str]
    """status, version, due_key, record."""
    history: HistoryRow | None
    """None for an amendment, which is not a transition."""
    counts: list[CountRow]
    """What the write adds to the trend counters."""

    @classmethod
    def of(cls, before: JobRecord, updated: JobRecord, line: Transition) -> _Planned:
        history = _history_row(line) if records_history(line) else None
        counts = _count_rows(updated, measures(before, updated, line))
        return cls(updated, _changed_columns(updated), history, counts)


def _load_text(db: sqlite3.Connection, job_id: str) -> str:
    row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return str(row[0])


def _load(db: sqlite3.Connection, job_id: str) -> JobRecord:
    return JobRecord.model_validate_json(_load_text(db, job_id))


def _history_row(line: Transition) -> HistoryRow:
    return (
        line.job_id,
        line.version,
        line.to_status.value,
        time_key(line.at),
        line.reason,
        line.model_dump_json(),
    )


def _outbox_rows(outbox: Sequence[tuple[str, CloudEvent]]) -> list[OutboxRow]:
    return [(topic, event_bytes(event), event.id) for topic, event in outbox]


def _insert_history(db: sqlite3.Connection, row: HistoryRow) -> None:
    db.execute(
        "INSERT INTO history (job_id, version, to_status, at_key, reason, line)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        row,
    )


def _count_rows(job: JobRecord, added: Sequence[Measure]) -> list[CountRow]:
    return [(job.team, m.day.isoformat(), m.kind, m.name, m.amount) for m in added]


def _add_counts(db: sqlite3.Connection, rows: list[CountRow]) -> None:
    if rows:
        db.executemany(
            "INSERT INTO trend_counts (team, day, kind, name, amount) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (team, day, kind, name) DO UPDATE SET amount = amount + excluded.amount",
            rows,
        )


def _insert_outbox(db: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    if rows:
        db.executemany("INSERT INTO outbox (topic, event, event_id) VALUES (?, ?, ?)", rows)
