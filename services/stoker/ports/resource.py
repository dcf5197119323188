"""Something a process opens before it serves and closes after: a store, a bus, a client."""

from __future__ import annotations

from typing import Protocol


class Resource(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...
