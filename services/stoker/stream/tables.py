"""Faust tables whose changelog partition is the partition of the pair being handled.

Faust writes a table update to the changelog partition of `faust.current_event()`; inside
`stream.take_events(...)` there is no current event (the batch is handed over after the
stream moved on), so the agent names the source partition of each pair it writes for, and
the update lands in the changelog partition that is co-partitioned with it. That keeps each
update in the same Kafka transaction as the pair's offset (see `publish.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import faust

_source_partition: ContextVar[int | None] = ContextVar("stoker_stream_partition", default=None)


@contextmanager
def writing_for(partition: int) -> Iterator[None]:
    """Table updates inside this block go to changelog partition `partition`."""
    token = _source_partition.set(partition)
    try:
        yield
    finally:
        _source_partition.reset(token)


class SourcePartitionTable(faust.Table[Any, Any]):
    """A `faust.Table` that takes its changelog partition from `writing_for`."""

    def partition_for_key(self, key: Any) -> int | None:
        partition = _source_partition.get()
        if partition is None:
            return super().partition_for_key(key)
        return partition
