"""How a stoker service process runs: on asyncio's standard event loop, with the garbage
collector tuned for a process that handles many small events for a long time.

Python's cyclic collector runs its youngest generation after a few hundred allocations,
and each run, and more so each full collection over a large heap of long-lived objects,
pauses the event loop: every task waits, launches included. Reference counting already
frees almost everything at once; only objects in reference cycles wait for a collection.
So a service process collects the youngest generation after `gc_threshold` allocations
instead (the older generations keep Python's proportions), and freezes the objects alive
after start-up (modules, pydantic schemas), which later collections then skip.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from stoker.settings import Settings

T = TypeVar("T")


def run_service_process(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Tune the collector, then run `main` to completion on a new standard event loop."""
    tune_gc(settings.gc_threshold)
    with asyncio.Runner() as runner:
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
