"""Waiting on a condition with a deadline, instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], bool], timeout_s: float = 5.0, interval_s: float = 0.0
) -> None:
    """Yield to the loop until `condition()` holds, checking every `interval_s` (0: at
    each turn of the loop); TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        # The state watched (queue depth, counters, a lock another thread takes) belongs to
        # code that exposes no event; yielding between checks lets that code run, and the
        # deadline bounds the wait.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(interval_s)


async def poll_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.02
) -> None:
    """Ask `condition()` (e.g. an HTTP probe of another process) until it holds."""
    async with asyncio.timeout(timeout_s):
        # Another process offers no event to wait on; its state is only visible by asking.
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(interval_s)
