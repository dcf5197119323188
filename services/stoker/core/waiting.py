"""Small asyncio helpers shared by the service loops."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_requested(stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for `stop`; True if it was set. Loops use it instead of sleep so
    shutdown is immediate."""
    if stop.is_set():  # no waiter task for an event that is already set
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)
    return stop.is_set()


async def first_set(*events: asyncio.Event) -> None:
    """Wait until one of `events` is set."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
