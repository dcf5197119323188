"""An in-memory object store: the port's fake, for tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stoker.adapters.objects.files import replace_whole
from stoker.ports.objects import ObjectMissing


class MemoryObjectStore:
    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = dict(objects or {})
        self.fetches: list[str] = []
        """Every key fetched, in order: what a cache in front of the store asked for."""

    @property
    def url(self) -> str:
        return "memory://models/"

    def url_of(self, key: str) -> str:
        return f"memory://models/{key}"

    async def fetch(self, key: str, dest: Path) -> int:
        self.fetches.append(key)
        try:
            data = self.objects[key]
        except KeyError:
            raise ObjectMissing(key, self.url) from None
        await asyncio.to_thread(replace_whole, dest, data)
        return len(data)

    async def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    async def keys(self) -> list[str]:
        return sorted(self.objects)

    async def close(self) -> None:
        return None


class MemoryObjectReader:
    """The ObjectReader port's fake: objects by (bucket, key)."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects: dict[tuple[str, str], bytes] = dict(objects or {})

    async def read(
        self, bucket: str, key: str, *, version_id: str | None = None, max_bytes: int
    ) -> bytes:
        try:
            data = self.objects[(bucket, key)]
        except KeyError:
            raise ObjectMissing(key, f"memory://{bucket}") from None
        if len(data) > max_bytes:
            raise ValueError(
                f"memory://{bucket}/{key} holds {len(data)} bytes, more than {max_bytes}"
            )
        return data

    async def close(self) -> None:
        return None
