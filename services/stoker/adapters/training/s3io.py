"""Copying folders to and from S3 for the local training backend (aiobotocore).

The client is opened on first use only, so jobs whose data is local never need the `aws`
extra or credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class S3TransferError(Exception):
    """An S3 copy failed; the local backend reports it as the job's failure reason."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") from "s3://bucket/key/prefix"."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


class S3Folders:
    """Download an S3 prefix into a folder, upload a folder or file under a prefix."""

    def __init__(self, *, region: str = "us-east-1", endpoint_url: str | None = None) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    async def _s3(self) -> S3Client:
        if self._client is None:
            from aiobotocore.session import get_session

            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3", region_name=self._region, endpoint_url=self._endpoint_url
                )
            )
        return self._client

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def download_prefix(
        self,
        uri: str,
        dest: Path,
        *,
        select: Callable[[list[str]], Collection[str]] | None = None,
    ) -> int:
        """Every object under the prefix, at its path relative to the prefix; returns count.
        `select`, given every relative key in S3's order, picks the ones to download."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, prefix = split_s3_uri(uri)
        client = await self._s3()
        count = 0
        try:
            keys: dict[str, str] = {}
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue  # a folder marker, not data
                    keys[key[len(prefix) :].lstrip("/") or Path(key).name] = key
            chosen = keys if select is None else select(list(keys))
            for relative in chosen:
                key = keys[relative]
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                response = await client.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    data = await body.read()
                await asyncio.to_thread(target.write_bytes, data)
                count += 1
        except (BotoCoreError, ClientError) as exc:
            raise S3TransferError(f"cannot download {uri}: {exc}") from exc
        return count

    async def upload_file(self, path: Path, uri: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3_uri(uri)
        client = await self._s3()
        try:
            body = await asyncio.to_thread(path.read_bytes)
            await client.put_object(Bucket=bucket, Key=key, Body=body)
        except (BotoCoreError, ClientError) as exc:
            raise S3TransferError(f"cannot upload {path} to {uri}: {exc}") from exc

    async def upload_folder(
        self, folder: Path, uri: str, *, only: Collection[Path] | None = None
    ) -> int:
        """Every file under `folder` (or those of `only`) to `uri`/<relative path>; returns
        count."""
        count = 0
        base = uri.rstrip("/")
        files = await asyncio.to_thread(lambda: sorted(p for p in folder.rglob("*") if p.is_file()))
        for path in files:
            if only is not None and path not in only:
                continue
            await self.upload_file(path, f"{base}/{path.relative_to(folder).as_posix()}")
            count += 1
        return count
