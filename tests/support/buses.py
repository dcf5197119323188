"""A bus fake the lifecycle, notifier and consumer tests share."""

from __future__ import annotations

from collections.abc import Sequence

from stoker.adapters.bus.memory import MemoryBus
from stoker.ports.bus import RecordSource


class SourceRecordingBus(MemoryBus):
    """A memory bus that remembers, per consumer group, whether its member was opened as a
    background one."""

    def __init__(self) -> None:
        super().__init__()
        self.background: dict[str, bool] = {}

    def source(
        self, group: str, topics: Sequence[str], *, background: bool = False
    ) -> RecordSource:
        self.background[group] = background
        return super().source(group, topics, background=background)
