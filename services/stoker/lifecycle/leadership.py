"""One active process among several, through a lease in the job store; the others stand by.

The monitor runs so (ADR 0024): its work is bounded by the SageMaker API's rate, which is
the account's, so several active monitors would split no work but multiply the listings.
A standby takes the lease when it expires (within `lease_ttl_s` of the holder's death), at
once when its holder stopped cleanly (it drops the lease), or when the holder is a process
of this host that no longer exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable

import structlog

from stoker.core.clock import Clock
from stoker.core.waiting import stop_requested
from stoker.lifecycle.capacity import PeerConfig
from stoker.ports.capacity import CapacityStore

log = structlog.get_logger("stoker.leadership")


def gone_from_this_host(owner: str) -> bool:
    """Whether `owner` (host:pid:random, `new_owner`) names a process of this host that no
    longer runs. A pid reused since counts as alive: the lease is then waited out."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Leadership:
    """Runs `work` while this process holds the lease `name`, standing by otherwise."""

    def __init__(
        self, store: CapacityStore, name: str, owner: str, clock: Clock, config: PeerConfig
    ) -> None:
        self._store = store
        self._name = name
        self._owner = owner
        self._clock = clock
        self._config = config

    async def run(
        self, stop: asyncio.Event, work: Callable[[asyncio.Event], Awaitable[None]]
    ) -> None:
        """Until `stop`: wait for the lease, run `work(active)` while holding it (`active` is
        set when the lease is lost or on `stop`), stand by again if it was lost."""
        try:
            while not stop.is_set():
                if not await self._take():
                    if await stop_requested(stop, self._config.heartbeat_interval_s):
                        return
                    continue
                log.info("holding the lease; active", lease=self._name, owner=self._owner)
                active = asyncio.Event()
                keeper = asyncio.create_task(self._keep(stop, active))
                try:
                    await work(active)
                finally:
                    active.set()
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keeper
        finally:
            if stop.is_set():
                # A clean stop hands over at once instead of after the lease's length.
                with contextlib.suppress(Exception):
                    await self._store.drop_lease(self._name, self._owner)

    async def _take(self) -> bool:
        try:
            for lease in await self._store.leases(self._name):
                if lease.name == self._name and gone_from_this_host(lease.owner):
                    await self._store.drop_lease(self._name, lease.owner)
            return await self._store.take_lease(
                self._name, self._owner, now=self._clock.now(), ttl_s=self._config.lease_ttl_s
            )
        except Exception as exc:
            log.warning("could not ask for the lease; retrying", lease=self._name, error=str(exc))
            return False

    async def _keep(self, stop: asyncio.Event, active: asyncio.Event) -> None:
        """Renew the lease every heartbeat; set `active` (the work stops) on `stop`, when
        another process holds the lease, or when renewing failed for a lease's length."""
        renewed = self._clock.monotonic()
        while not await stop_requested(stop, self._config.heartbeat_interval_s):
            try:
                held = await self._store.take_lease(
                    self._name, self._owner, now=self._clock.now(), ttl_s=self._config.lease_ttl_s
                )
            except Exception as exc:
                log.warning("could not renew the lease", lease=self._name, error=str(exc))
                held = self._clock.monotonic() - renewed < self._config.lease_ttl_s
            else:
                if held:
                    renewed = self._clock.monotonic()
            if not held:
                log.warning("lost the lease; standing by", lease=self._name, owner=self._owner)
                break
        active.set()
