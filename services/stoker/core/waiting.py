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
