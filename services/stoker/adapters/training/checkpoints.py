"""A training job's checkpoints, copied between `CheckpointConfig.S3Uri` and its hosts.

Before a host starts, everything under the URI (an S3 prefix, a `file://` URI or a local
folder) is restored into the host's checkpoint folder, so a retried or resubmitted job with
the same URI sees what the attempts before it saved. While the host runs (every
`period_s`), when it exits and when the job ends, the files that are new or changed since
the last save are copied back, so what a host finished survives its crash.

A file is saved whole: a local copy is written under a temporary name and renamed in, an S3
object is one PUT. Files whose name starts with `.` are not copied: a script writes a
checkpoint under such a name and renames it when complete, so a save never copies half a
file.

A single-host job with a local folder as its URI uses that folder in place instead (nothing
to copy: `hosts.checkpoint_folder`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from stoker.adapters.training.container import copy_into, local_path
from stoker.adapters.training.s3io import S3Folders

_Stamp = tuple[int, int]


def _files(folder: Path) -> dict[Path, _Stamp]:
    """Every complete file under `folder` (no part of its path starting with `.`) with its
    modification time and size."""
    found: dict[Path, _Stamp] = {}
    if not folder.is_dir():
        return found
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # renamed or removed while we looked
        if path.is_file():
            found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


def _copy_whole(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, dest)


class CheckpointSync:
    """The checkpoints of one job: restores them into host folders and saves them back."""

    def __init__(self, s3: S3Folders, uri: str) -> None:
        self.uri = uri
        self._s3 = s3
        self._target = local_path(uri)
        self._saved: dict[Path, _Stamp] = {}
        self._lock = asyncio.Lock()

    async def restore(self, folder: Path) -> None:
        """Copy everything under the URI into `folder` (made if missing)."""
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        if self._target is None:
            await self._s3.download_prefix(self.uri, folder)
        elif await asyncio.to_thread(self._target.exists):
            await asyncio.to_thread(copy_into, self._target, folder)
        async with self._lock:
            # What was just restored needs no copying back.
            self._saved.update(await asyncio.to_thread(_files, folder))

    async def save(self, folder: Path) -> int:
        """Copy the files of `folder` that are new or changed since its last save to the
        URI; returns how many. Raises OSError or S3TransferError."""
        async with self._lock:
            now = await asyncio.to_thread(_files, folder)
            changed = {path: stamp for path, stamp in now.items() if self._saved.get(path) != stamp}
            if not changed:
                return 0
            if self._target is None:
                await self._s3.upload_folder(folder, self.uri, only=set(changed))
            else:
                target = self._target
                for path in sorted(changed):
                    await asyncio.to_thread(_copy_whole, path, target / path.relative_to(folder))
            self._saved.update(changed)
            return len(changed)
