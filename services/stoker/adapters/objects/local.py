"""A local folder as the object store (the embedded default, and SageMaker's own layout of
downloaded models)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path, PurePosixPath

from stoker.adapters.objects.files import replace_whole, temporary_beside
from stoker.ports.objects import ObjectMissing, ObjectStoreUnavailable


def _relative(key: str) -> PurePosixPath:
    """`key` as a path that stays under the root: no absolute path, no `..`."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise ObjectMissing(key, "the store (keys are relative, without '..')")
    return path


class LocalFolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def url(self) -> str:
        return self.root.as_uri() + "/"

    def url_of(self, key: str) -> str:
        return (self.root / _relative(key)).as_uri()

    async def fetch(self, key: str, dest: Path) -> int:
        source = self.root / _relative(key)
        return await asyncio.to_thread(self._copy, key, source, dest)

    def _copy(self, key: str, source: Path, dest: Path) -> int:
        tmp = temporary_beside(dest)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            raise ObjectMissing(key, str(self.root)) from exc
        except IsADirectoryError as exc:
            raise ObjectMissing(key, str(self.root)) from exc
        except OSError as exc:
            raise ObjectStoreUnavailable(f"reading {source}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest.stat().st_size

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(replace_whole, self.root / _relative(key), data)

    async def keys(self) -> list[str]:
        return await asyncio.to_thread(self._keys)

    def _keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    async def close(self) -> None:
        return None
