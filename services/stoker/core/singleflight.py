"""One run of a coroutine per key however many callers ask for it at once.

The first caller of `do(key, work)` starts `work()` as a task of its own; every caller that
asks for the same key while it runs awaits that same task and gets its result or its error.
A caller that is cancelled stops waiting without cancelling the work the others wait for.
Once the run ends the key is free: the next call starts a new run (a failed load is tried
again by the next request, not remembered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}
        self.started = 0
        """How many runs were started (not how many callers asked): for metrics and tests."""

    def in_flight(self, key: str) -> bool:
        return key in self._running

    async def do(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self.started += 1
            self._running[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one waiter's cancellation must not cancel the run the others wait on.
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            # Retrieved here so an error nobody waited for is not reported as "never
            # retrieved"; every waiter still receives it from the shielded await.
            task.exception()
