"""The save-on-version rules every PipelineStore adapter shares, so memory, SQLite and
DynamoDB refuse the same writes with the same errors.

Each adapter makes its write conditional in its own way (a dict check, one SQL statement, a
DynamoDB condition expression); when the condition fails, or before writing where the store
reads first, it hands what it found to these functions, which decide the answer.
"""

from __future__ import annotations

from datetime import datetime

from stoker.core.cursors import InvalidCursor, decode_cursor, encode_cursor, time_key
from stoker.core.errors import StokerError
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    StoredExecution,
)


def execution_save_refusal(
    execution_id: str, expected_version: int, stored_version: int | None
) -> StokerError | None:
    """Why a save of an execution made from `expected_version` may not land, given the
    version stored now (None: no such execution), or None when it may."""
    if stored_version is None:
        return ExecutionNotFound(execution_id)
    if stored_version != expected_version:
        return ExecutionConflict(execution_id, expected_version, stored_version)
    return None


def schedule_put_refusal(
    name: str,
    team: str,
    expected_version: int | None,
    stored: tuple[int, str] | None,
) -> StokerError | None:
    """Why a put of a schedule may not land, given the (version, team) stored now (None:
    no such schedule), or None when it may. `expected_version` None asks for a new one."""
    if expected_version is None:
        return ScheduleConflict(name) if stored is not None else None
    if stored is None:
        return ScheduleNotFound(name)
    version, owner = stored
    if version != expected_version or owner != team:
        return ScheduleConflict(name)
    return None


def execution_position(stored: StoredExecution) -> tuple[str, str]:
    """Where an execution sits in a pipeline's newest-first listing: (start time key,
    execution id), the same in every store, so a cursor means the same to all of them."""
    return time_key(stored.state.started_at), stored.execution_id


def cursor_after(stored: StoredExecution) -> str:
    """The cursor of a page that continues after `stored` (base64 of JSON, opaque)."""
    started, execution_id = execution_position(stored)
    return encode_cursor({"t": started, "id": execution_id})


def position_of(cursor: str) -> tuple[str, str]:
    """The position a cursor continues after; InvalidCursor for one no store handed out."""
    position = decode_cursor(cursor)
    started, execution_id = position.get("t"), position.get("id")
    if not isinstance(started, str) or not isinstance(execution_id, str):
        raise InvalidCursor(f"malformed cursor {cursor[:40]!r}")
    return started, execution_id


def next_cursor(found: list[StoredExecution], limit: int) -> str | None:
    """`found` holds up to limit + 1 executions after the position: a next page exists when
    it holds more than `limit`, and starts after the last one returned."""
    return cursor_after(found[limit - 1]) if len(found) > limit else None


LAST_ID = "\U0010ffff"
"""Sorts after every execution id (in code points, and in the UTF-8 bytes SQLite and
DynamoDB compare)."""


def cursor_at(moment: datetime, *, oldest_first: bool = False) -> str:
    """A cursor whose page starts with the executions that started at `moment` (to the
    microsecond), then goes on in the page's order: a listing from a point in time, without
    reading the executions before it."""
    started = time_key(moment)
    return encode_cursor({"t": started, "id": "" if oldest_first else LAST_ID})
