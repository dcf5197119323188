"""The launch path first (ADR 0017): an event loop that wakes hurried tasks before the
callbacks already queued.

asyncio runs ready callbacks in the order they were queued. In a busy services process a
round of them lasts tens of milliseconds, and every hop of a New job on its way to
CreateTrainingJob (the launcher's consumer, its intake, the launch task, the store writes,
the publish of the events) waited a whole round behind the monitor's and the retrier's
work, five or more rounds per job. `HurryingEventLoop` puts the wake-up of a hurried task
(what it awaited is done) and the first step of a task started with `spawn_hurried` at the
front of the queue instead, so the task goes on as soon as the callback running now
returns. The launcher's consumer, intake and launch tasks are hurried; the store's lanes
and the publishing task serve every role and keep their place (ADR 0017).

Only wake-ups and first steps move. A hurried task that yields on purpose (`await asyncio.sleep(0)`)
still lets the queue go first, so a busy hurried task cannot starve the loop: it gets
ahead of the queue once per thing it waits for. Callbacks scheduled from other threads
(`call_soon_threadsafe`) are not moved either; the loop's thread alone touches the queue.

On any other event loop (tests, uvloop) the functions here only keep their bookkeeping and
tasks run in the usual order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_WAKE_UPS = frozenset({"task_wakeup", "__wakeup"})
"""The name of a task's wake-up callback: C Task, and Python Task."""

_hurried: set[asyncio.Task[Any]] = set()
"""Tasks that go first; each leaves the set when it is done."""


class HurryingEventLoop(asyncio.SelectorEventLoop):
    """The standard selector loop, except that a hurried task's wake-up goes to the front of
    the ready queue (see the module docstring)."""

    def call_soon(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        # Every callback passes here: the cheap test first (nothing hurried, most of them).
        if _hurried and getattr(callback, "__name__", "") in _WAKE_UPS:
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Task) and owner in _hurried:
                self._newest_to_front(handle)
        return handle

    def _newest_to_front(self, handle: asyncio.Handle | None = None) -> None:
        """Move the callback queued last (if it is `handle`: another thread may have queued
        one since) to the front of the queue."""
        # `_ready` is BaseEventLoop's queue of callbacks for the next rounds; a Python that
        # keeps it otherwise runs hurried tasks in the usual order (test_hurry checks).
        ready = getattr(self, "_ready", None)
        if isinstance(ready, deque) and ready and (handle is None or ready[-1] is handle):
            ready.appendleft(ready.pop())


def hurry(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """Wake `task` first from now on, until it is done."""
    if not task.done():
        _hurried.add(task)
        task.add_done_callback(_hurried.discard)
    return task


def hurry_current_task() -> None:
    """Wake the running task first from now on (a service loop on the launch path)."""
    task = asyncio.current_task()
    if task is not None:
        hurry(task)


def spawn_hurried(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task for `coro` that starts before the callbacks already queued, and is hurried."""
    loop = asyncio.get_running_loop()
    task = hurry(loop.create_task(coro, name=name))
    if isinstance(loop, HurryingEventLoop):
        loop._newest_to_front()  # creating the task queued its first step last
    return task
