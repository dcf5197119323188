"""Small parts of the local backend: its process slots, job keys and folders, and waiting for
a process that is not its child."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from stoker.adapters.processes import ProcessRef, is_alive
from stoker.core.job_kind import JobKind

PROCESSING_FOLDER = "_processing"
"""Where processing jobs live in the work folder: a name no job can have (SageMaker names
hold no underscore), since a processing job may share its name with a training job."""
MARKER_POLL_S = 0.25
"""How soon a stop asked by another process is noticed, and how often an adopted process
(not our child: nothing tells us when it exits) is looked at."""


class Slots:
    """At most `size` processes at once. A process taken over already runs, so it is
    followed at once even when every slot is taken; the cap holds again as processes end
    (the next slot freed then goes to nobody)."""

    def __init__(self, size: int) -> None:
        self._free = asyncio.Semaphore(size)
        self._over = 0

    @contextlib.asynccontextmanager
    async def held(self, *, running: bool = False) -> AsyncIterator[None]:
        if running and self._free.locked():
            self._over += 1
        else:
            await self._free.acquire()
        try:
            yield
        finally:
            if self._over:
                self._over -= 1
            else:
                self._free.release()


async def gone(process: ProcessRef) -> None:
    """Until `process` (not our child) has exited: nothing signals that, so it is looked at
    every MARKER_POLL_S."""
    while is_alive(process):  # noqa: ASYNC110 - no event to wait on: another process's exit
        await asyncio.sleep(MARKER_POLL_S)


def job_key(name: str, kind: JobKind) -> str:
    """A job's key among this backend's jobs: names are unique per kind, regardless of case."""
    return name.lower() if kind is JobKind.TRAINING else f"{PROCESSING_FOLDER}/{name.lower()}"
