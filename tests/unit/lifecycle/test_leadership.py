"""One active monitor among several: the lease in the store decides, a standby takes over
at once after a clean stop and within a lease's length after a holder died."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import SystemClock
from stoker.lifecycle.capacity import PeerConfig
from stoker.lifecycle.leadership import Leadership, gone_from_this_host
from tests.support.waiting import wait_until

CONFIG = PeerConfig(heartbeat_interval_s=0.05, lease_ttl_s=0.3, reconcile_interval_s=1)


async def test_a_standby_takes_over_after_a_clean_stop_and_after_a_death() -> None:
    store = MemoryJobStore()
    clock = SystemClock()
    active: list[str] = []

    def member(owner: str) -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()

        async def work(still: asyncio.Event) -> None:
            active.append(owner)
            await still.wait()

        lead = Leadership(store, "monitor", owner, clock, CONFIG)
        return stop, asyncio.create_task(lead.run(stop, work))

    stop_a, task_a = member("other-host:1:a")
    await wait_until(lambda: active == ["other-host:1:a"], 5, what="A active")
    stop_b, task_b = member("other-host:2:b")
    stop_c, task_c = member("other-host:3:c")
    # A stops cleanly: one standby takes over at once.
    stop_a.set()
    await task_a
    await wait_until(lambda: len(active) == 2, 5, what="a standby active")
    # That one dies (no clean stop): the other takes over once its lease expired.
    survivor = "other-host:3:c" if active[1] == "other-host:2:b" else "other-host:2:b"
    dying = task_b if active[1] == "other-host:2:b" else task_c
    dying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    await wait_until(lambda: active[-1] == survivor, 5, what="the last standby active")
    assert len(active) == 3
    for stop in (stop_b, stop_c):
        stop.set()
    await asyncio.gather(task_b, task_c, return_exceptions=True)


def test_only_a_process_of_this_host_that_is_gone_counts_as_gone() -> None:
    assert not gone_from_this_host(f"{socket.gethostname()}:{os.getpid()}:x")
    assert not gone_from_this_host("another-host:1:x")
    assert gone_from_this_host(f"{socket.gethostname()}:{2**22 + 12345}:x")
