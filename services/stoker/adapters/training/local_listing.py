"""The jobs a local backend's listing finds on disk: those other processes (or earlier runs
of this one) left in the work folder.

A finished job's state file never changes again, so a listing keeps what it read of each
finished job and reads the file again only when it is not the file read before (another
inode or modification time: the folder was removed and a job of the same name made since).
A listing over thousands of finished jobs then costs a directory scan and a stat per job,
not a read and a parse of each state file on every call. Jobs still running are read every
time: their state moves, and reading them is how a dead owner's job is noticed and taken
over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from stoker.adapters.training.container import STATE_FILE, JobPaths
from stoker.adapters.training.local_state import LocalJob
from stoker.adapters.training.local_support import job_key
from stoker.core.job_kind import JobKind

_Stamp = tuple[int, int]


class DiskJobs:
    """The jobs of one kind under a work folder, as a listing reads them."""

    def __init__(self, folder: Path, kind: JobKind) -> None:
        self.folder = folder
        self.kind = kind
        self._finished: dict[str, tuple[_Stamp, LocalJob]] = {}

    def read(
        self, skip: Callable[[str], bool], load: Callable[[JobPaths], LocalJob | None]
    ) -> dict[str, LocalJob]:
        """Every job on disk by key but those `skip(key)` says the caller holds; `load`
        reads (and may take over) one job's folder."""
        found: dict[str, LocalJob] = {}
        finished: dict[str, tuple[_Stamp, LocalJob]] = {}
        if not self.folder.is_dir():
            self._finished = finished
            return found
        with os.scandir(self.folder) as entries:
            names = [entry.name for entry in entries if entry.is_dir()]
        for name in names:
            key = job_key(name, self.kind)
            if skip(key):
                continue
            try:
                stat = os.stat(os.path.join(self.folder, name, STATE_FILE))
            except OSError:
                continue  # no state yet (a job being made), or not a job's folder
            stamp = (stat.st_ino, stat.st_mtime_ns)
            cached = self._finished.get(key)
            if cached is not None and cached[0] == stamp:
                job: LocalJob | None = cached[1]
            else:
                job = load(JobPaths(self.folder / name))
            if job is None or job.kind is not self.kind:
                continue
            found[key] = job
            if job.status.terminal:
                # Read after the stat: a file replaced in between is read again next time.
                finished[key] = (stamp, job)
        self._finished = finished  # forgets folders that are gone
        return found
