"""Waiting on a condition with a deadline, instead of sleeping for a guessed time.

The state watched (a queue depth, a counter, a file another process writes, an HTTP probe)
belongs to code that offers no event to wait on; checking between turns of the loop (or
short pauses, for another process) lets that code run, and the deadline bounds the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any


def _timed_out(what: str | None, timeout_s: float) -> TimeoutError:
    return TimeoutError(f"{what or 'the condition'} did not happen within {timeout_s} s")


def _check_running(tasks: Collection[asyncio.Future[Any]], what: str | None) -> None:
    """Raise what a watched task ended with, or say it ended before the condition held."""
    for task in tasks:
        if task.done():
            task.result()
            raise AssertionError(f"{task!r} ended before {what or 'the condition held'}")


async def wait_until(
    condition: Callable[[], bool],
    timeout_s: float = 5.0,
    interval_s: float = 0.0,
    *,
    what: str | None = None,
    while_running: Collection[asyncio.Future[Any]] = (),
) -> None:
    """Until `condition()` holds, checking every `interval_s` (0: at each turn of the loop).

    TimeoutError naming `what` after `timeout_s`. A task of `while_running` (say, the service
    under test) that ends first fails the wait at once, with its own error if it had one.
    """
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                _check_running(while_running, what)
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise _timed_out(what, timeout_s) from None


async def poll_until(
    condition: Callable[[], Awaitable[bool]],
    timeout_s: float,
    interval_s: float = 0.02,
    *,
    what: str | None = None,
) -> None:
    """Ask `condition()` (an HTTP probe of another process, a read of a store) until it
    holds; TimeoutError naming `what` after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():  # noqa: ASYNC110
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise _timed_out(what, timeout_s) from None


async def wait_quiet(
    value: Callable[[], object], quiet_s: float, timeout_s: float, interval_s: float = 0.1
) -> None:
    """Until `value()` has not changed for `quiet_s`: room for something that must not happen
    (a repeated delivery, say) to show up before the test counts. TimeoutError after
    `timeout_s` if it keeps changing."""
    loop = asyncio.get_running_loop()
    last, since = value(), loop.time()
    try:
        async with asyncio.timeout(timeout_s):
            while loop.time() - since < quiet_s:
                await asyncio.sleep(interval_s)
                now = value()
                if now != last:
                    last, since = now, loop.time()
    except TimeoutError:
        raise _timed_out(f"quiet for {quiet_s} s", timeout_s) from None


def wait_until_blocking(
    condition: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.1,
    *,
    what: str | None = None,
) -> None:
    """`wait_until` for synchronous code (fixtures that start processes): blocks the thread."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s)
        time.sleep(interval_s)
