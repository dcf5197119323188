"""S3 as the object store (aiobotocore, the `aws` extra: only a prefix in S3 imports this
module). The client opens on first use."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from stoker.adapters.objects.files import temporary_beside
from stoker.core.errors import StokerError
from stoker.ports.objects import ObjectMissing, ObjectStoreUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CHUNK_BYTES = 1 << 20


def split_s3_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix/") from "s3://bucket/prefix"; the prefix ends in `/` unless empty."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class _LazyS3Client:
    """One aiobotocore S3 client, opened on first use and closed with `close()`."""

    def __init__(self, *, region: str, endpoint_url: str | None, config: Any) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._config = config
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    async def get(self) -> S3Client:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=self._config,
                )
            )
        return self._client

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


class S3Store:
    def __init__(
        self,
        url: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        config: Any = None,
    ) -> None:
        self.bucket, self.prefix = split_s3_url(url)
        self._client = _LazyS3Client(region=region, endpoint_url=endpoint_url, config=config)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    async def _s3(self) -> S3Client:
        return await self._client.get()

    async def fetch(self, key: str, dest: Path) -> int:
        s3 = await self._s3()
        tmp = temporary_beside(dest)
        try:
            reply = await s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
            size = 0
            # The file is written in chunks as they arrive: a model is never held twice.
            with tmp.open("wb") as out:
                async with reply["Body"] as body:
                    while chunk := await body.read(_CHUNK_BYTES):
                        out.write(chunk)
                        size += len(chunk)
            os.replace(tmp, dest)
            return size
        except ClientError as exc:
            raise _translated(exc, key, self.url) from exc
        except (BotoCoreError, OSError) as exc:
            raise ObjectStoreUnavailable(f"reading {self.url_of(key)}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    async def put(self, key: str, data: bytes) -> None:
        s3 = await self._s3()
        try:
            await s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreUnavailable(f"writing {self.url_of(key)}: {exc}") from exc

    async def keys(self) -> list[str]:
        s3 = await self._s3()
        found: list[str] = []
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            async for page in pages:
                found.extend(o["Key"][len(self.prefix) :] for o in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreUnavailable(f"listing {self.url}: {exc}") from exc
        return sorted(found)

    async def close(self) -> None:
        await self._client.close()


def _translated(exc: ClientError, key: str, where: str) -> StokerError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _MISSING_CODES:
        return ObjectMissing(key, where)
    return ObjectStoreUnavailable(f"reading {key!r} under {where}: {code}")


class S3ObjectReader:
    """Any object of the account's S3 (or the S3-compatible server botocore is pointed at
    with AWS_ENDPOINT_URL_S3), read whole."""

    def __init__(
        self, *, region: str = "us-east-1", endpoint_url: str | None = None, config: Any = None
    ) -> None:
        self._client = _LazyS3Client(region=region, endpoint_url=endpoint_url, config=config)

    async def _s3(self) -> S3Client:
        return await self._client.get()

    async def read(
        self, bucket: str, key: str, *, version_id: str | None = None, max_bytes: int
    ) -> bytes:
        where = f"s3://{bucket}"
        try:
            s3 = await self._s3()
            if version_id:
                reply = await s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
            else:
                reply = await s3.get_object(Bucket=bucket, Key=key)
            if reply["ContentLength"] > max_bytes:
                raise ValueError(
                    f"s3://{bucket}/{key} holds {reply['ContentLength']} bytes, "
                    f"more than {max_bytes}"
                )
            async with reply["Body"] as body:
                return bytes(await body.read())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                raise ObjectMissing(key, where) from exc
            raise _translated(exc, key, where) from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"reading s3://{bucket}/{key}: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()
