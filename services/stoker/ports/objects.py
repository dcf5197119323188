"""Object store port: the models' home (a local folder, S3) as the endpoint sees it.

Keys are relative to the store's prefix, `/`-separated (`17.tar.gz`, `team/17.tar.gz`).
Adapters translate their own failures once: a key that is not there is `ObjectMissing`,
anything else that stops a read is `ObjectStoreUnavailable` (worth trying again later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from stoker.core.errors import InfrastructureUnavailable, StokerError


class ObjectMissing(StokerError):
    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"no object {key!r} under {where}")
        self.key = key


class ObjectStoreUnavailable(InfrastructureUnavailable):
    """The store could not be read for a reason that may clear (unreachable, throttled)."""


class ObjectStore(Protocol):
    @property
    def url(self) -> str:
        """Where the store's prefix is (`file:///srv/models/`, `s3://bucket/models/`)."""
        ...

    def url_of(self, key: str) -> str:
        """Where `key` is, for listings and logs."""
        ...

    async def fetch(self, key: str, dest: Path) -> int:
        """Copy the object to the file `dest` (replaced whole, never half-written); returns
        its size in bytes."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Write the object (tests, the bench and artifact uploads)."""
        ...

    async def keys(self) -> list[str]:
        """Every key under the prefix, sorted."""
        ...

    async def close(self) -> None: ...


class ObjectReader(Protocol):
    """Reads one object by bucket and key anywhere in the store (a SageMaker request's
    `PipelineDefinitionS3Location`); ObjectMissing, ObjectStoreUnavailable."""

    async def read(
        self, bucket: str, key: str, *, version_id: str | None = None, max_bytes: int
    ) -> bytes:
        """The object's bytes; ValueError when it is larger than `max_bytes`."""
        ...

    async def close(self) -> None: ...
