"""Reading what a topic carries, through a consumer group of the test's own (so it takes
nothing from the groups of the code under test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from stoker.core.events import decode_event
from stoker.ports.bus import BusRecord, EventBus

T = TypeVar("T")
MAX_RECORDS = 1000


class TopicReader:
    """`async with TopicReader(bus, topic) as reader:`; every record read stays in `records`."""

    def __init__(self, bus: EventBus, *topics: str, group: str | None = None) -> None:
        self.records: list[BusRecord] = []
        self.source = bus.source(group or f"test-reader-{uuid.uuid4().hex[:10]}", list(topics))

    async def read(self, wait_s: float = 0.05) -> list[BusRecord]:
        """One fetch, waiting at most `wait_s`; returns the records it brought."""
        batch = list(await self.source.fetch(MAX_RECORDS, wait_s))
        self.records.extend(batch)
        return batch

    async def read_all(self, wait_s: float = 0.05) -> list[BusRecord]:
        """Fetch until a fetch brings nothing: everything an in-process bus holds now."""
        while await self.read(wait_s):
            pass
        return self.records

    async def read_until(
        self, condition: Callable[[], bool], timeout_s: float, wait_s: float = 0.2
    ) -> list[BusRecord]:
        """Fetch until `condition()` holds (it looks at `records` or at `events()`);
        TimeoutError after `timeout_s`. For a broker whose records arrive over time."""
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    await self.read(wait_s)
        except TimeoutError:
            raise TimeoutError(
                f"condition not met within {timeout_s} s ({len(self.records)} records read)"
            ) from None
        return self.records

    def events(self) -> list[Any]:
        """The data of every record read, decoded and validated as the services do."""
        return [decode_event(record.value).data for record in self.records]

    def events_of(self, kind: type[T]) -> list[T]:
        return [data for data in self.events() if isinstance(data, kind)]

    async def close(self) -> None:
        await self.source.close()

    async def __aenter__(self) -> TopicReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def read_all(bus: EventBus, *topics: str) -> list[BusRecord]:
    """Every record the topics of an in-process bus hold now."""
    async with TopicReader(bus, *topics) as reader:
        return await reader.read_all()


async def events_on(bus: EventBus, *topics: str) -> list[Any]:
    """The decoded data of every event the topics of an in-process bus hold now."""
    async with TopicReader(bus, *topics) as reader:
        await reader.read_all()
        return reader.events()
