"""The save-on-version rules the memory, SQLite and DynamoDB pipeline stores share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stoker.core.cursors import InvalidCursor, encode_cursor
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    PipelineNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    next_pipeline,
)
from stoker.core.pipelines.store_rules import (
    execution_save_refusal,
    position_of,
    schedule_put_refusal,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_put_makes_version_one_then_counts_up_keeping_the_creation_time() -> None:
    first = next_pipeline(None, "p", team="a", definition="{}", description=None, now=T0)
    assert (first.version, first.created_at, first.updated_at) == (1, T0, T0)
    later = T0 + timedelta(hours=1)
    second = next_pipeline(first, "p", team="a", definition="[]", description="d", now=later)
    assert (second.version, second.created_at, second.updated_at) == (2, T0, later)
    assert (second.definition, second.description) == ("[]", "d")
    with pytest.raises(PipelineNotFound):
        next_pipeline(second, "p", team="b", definition="{}", description=None, now=later)


def test_a_save_lands_only_on_the_version_stored() -> None:
    assert execution_save_refusal("e", 3, 3) is None
    conflict = execution_save_refusal("e", 3, 4)
    assert isinstance(conflict, ExecutionConflict)
    assert (conflict.expected, conflict.actual) == (3, 4)
    assert isinstance(execution_save_refusal("e", 3, None), ExecutionNotFound)


def test_a_schedule_is_made_once_and_changed_from_its_version_by_its_team() -> None:
    assert schedule_put_refusal("s", "a", None, None) is None
    assert isinstance(schedule_put_refusal("s", "a", None, (1, "a")), ScheduleConflict)
    assert schedule_put_refusal("s", "a", 1, (1, "a")) is None
    assert isinstance(schedule_put_refusal("s", "a", 1, (2, "a")), ScheduleConflict)
    assert isinstance(schedule_put_refusal("s", "b", 1, (1, "a")), ScheduleConflict)
    assert isinstance(schedule_put_refusal("s", "a", 1, None), ScheduleNotFound)


def test_a_cursor_of_another_shape_is_refused() -> None:
    assert position_of(encode_cursor({"t": "2026", "id": "e"})) == ("2026", "e")
    with pytest.raises(InvalidCursor):
        position_of(encode_cursor({"t": 5, "id": "e"}))
    with pytest.raises(InvalidCursor):
        position_of("%%%")
