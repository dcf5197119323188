"""The files of a local job's hosts before and after they run: layouts, inputs, checkpoints.

Before the processes start, each host of a training or processing job gets its /opt/ml
tree, its channels or inputs (all of a FullyReplicated one, its share of a ShardedByS3Key
one) and a training job's checkpoints restored from CheckpointConfig.S3Uri. While they run
and when they end, each host's new checkpoints are saved back (`checkpoints.py`); a failed
save is logged and tried again at the next one, never fatal: the files stay in the host's
folder. When the job ends, the hosts' folders are packed or uploaded from where they are
(`outputs.py`).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from stoker.adapters.training.checkpoints import CheckpointSync
from stoker.adapters.training.container import (
    SHARDED_BY_S3_KEY,
    Channel,
    JobPaths,
    LocalJobRequest,
    copy_into,
    local_path,
    write_layout,
)
from stoker.adapters.training.hosts import checkpoint_folder, checkpoint_in_place, host_paths
from stoker.adapters.training.processing import write_processing_layout
from stoker.adapters.training.s3io import S3Folders, S3TransferError
from stoker.core.job_kind import JobKind
from stoker.core.sharding import keys_for_host
from stoker.logs import get_logger

log = get_logger("stoker.adapters.training.host_files")


def _local_keys(source: Path) -> list[str]:
    if source.is_file():
        return [source.name]
    return [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]


def _copy_keys(source: Path, keys: Collection[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for key in keys:
        origin = source if source.is_file() else source / key
        target = dest / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)


async def stage_channel(
    s3: S3Folders, paths: JobPaths, spec: LocalJobRequest, channel: Channel, host_index: int
) -> None:
    """Copy `channel` into host number `host_index`'s folder: all of it (FullyReplicated)
    or the host's share of its keys (ShardedByS3Key, `core.sharding`)."""
    dest = paths.root / channel.dest
    source = local_path(channel.uri)
    sharded = channel.distribution == SHARDED_BY_S3_KEY and spec.instance_count > 1

    def share(keys: list[str]) -> list[str]:
        return keys_for_host(keys, host_index, spec.instance_count)

    if source is None:
        await s3.download_prefix(channel.uri, dest, select=share if sharded else None)
    elif not sharded:
        await asyncio.to_thread(copy_into, source, dest)
    else:
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        keys = await asyncio.to_thread(_local_keys, source)
        await asyncio.to_thread(_copy_keys, source, share(keys), dest)


class HostFiles:
    """Stages the hosts' inputs and keeps their checkpoints, for every job of a backend."""

    def __init__(self, s3: S3Folders) -> None:
        self._s3 = s3
        self._syncs: dict[Path, CheckpointSync] = {}

    async def stage(self, paths: JobPaths, spec: LocalJobRequest, request: dict[str, Any]) -> None:
        """Lay out each host's /opt/ml, fetch its channels (inputs) and checkpoints. Raises
        OSError, ValueError or S3TransferError."""
        sync = self._sync(paths, spec)
        training = spec.kind is JobKind.TRAINING
        layout = write_layout if training else write_processing_layout
        for index, host in enumerate(spec.hosts):
            own = host_paths(paths, spec, host)
            await asyncio.to_thread(layout, own, spec, request, host)
            for channel in spec.channels:
                await stage_channel(self._s3, own, spec, channel, index)
            if training:
                folder = checkpoint_folder(own, spec)
                if sync is not None:
                    await sync.restore(folder)
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)

    async def save_checkpoints(
        self, paths: JobPaths, spec: LocalJobRequest, host: str | None = None
    ) -> None:
        """Save the new checkpoints of `host` (None: of every host) to CheckpointConfig."""
        sync = self._sync(paths, spec)
        if sync is None:
            return
        for name in spec.hosts if host is None else [host]:
            folder = checkpoint_folder(host_paths(paths, spec, name), spec)
            try:
                saved = await sync.save(folder)
            except (OSError, S3TransferError) as exc:
                log.warning("cannot save checkpoints", job=spec.name, host=name, error=str(exc))
            else:
                if saved:
                    log.info("checkpoints saved", job=spec.name, host=name, files=saved)

    def forget(self, paths: JobPaths) -> None:
        """The job has ended: drop what was remembered of its checkpoints."""
        self._syncs.pop(paths.root, None)

    def _sync(self, paths: JobPaths, spec: LocalJobRequest) -> CheckpointSync | None:
        """The job's checkpoint copier; None when it has no CheckpointConfig to copy to."""
        if spec.kind is not JobKind.TRAINING:
            return None
        if spec.checkpoint_uri is None or checkpoint_in_place(spec):
            return None
        if paths.root not in self._syncs:
            self._syncs[paths.root] = CheckpointSync(self._s3, spec.checkpoint_uri)
        return self._syncs[paths.root]
