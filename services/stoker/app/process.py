"""How a stoker service process runs: with a garbage collector tuned for a process that
handles many small events for a long time (ADR 0008).

The youngest generation of Python's cyclic garbage collector is collected every
`gc_threshold` allocations instead of every 700. At the default, a busy services process
spent about a quarter of its CPU in the collector, mostly in full collections over a heap of
long-lived objects, each of which also paused the event loop for about 125 ms. Reference
counting still frees almost everything at once; only objects in reference cycles wait for a
collection, and the older generations keep Python's proportions. Objects alive after
start-up (modules, pydantic schemas) are frozen out of every later collection.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from stoker.hurry import HurryingEventLoop
from stoker.settings import Settings

T = TypeVar("T")


def run_service_process(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Tune the collector, then run `main` to completion on a new event loop that wakes the
    launch path first (`stoker.hurry`, ADR 0017)."""
    tune_gc(settings.gc_threshold)
    with asyncio.Runner(loop_factory=HurryingEventLoop) as runner:
        return runner.run(main)


def tune_gc(threshold: int) -> None:
    """Collect the youngest generation every `threshold` allocations (0: leave Python's
    setting) and freeze what is alive now out of later collections."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
