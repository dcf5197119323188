"""How a long-running stoker process runs: its event loop and its garbage collector.

Both are tuned for a process that handles many small events for a long time (ADR 0008):

- uvloop runs the loop's own work (callbacks, timers, futures, sockets) in C. Where it is
  not installed (it is not built for Windows) the standard loop runs instead; the services
  behave the same on both.
- The youngest generation of Python's cyclic garbage collector is collected every
  `gc_threshold` allocations instead of every 700. At the default, a busy services process
  spent about a quarter of its CPU in the collector, mostly in full collections over a heap
  of long-lived objects, each of which also paused the event loop for about 125 ms.
  Reference counting still frees almost everything at once; only cycles wait for a
  collection, and the older generations keep Python's proportions. Objects alive after
  start-up (modules, pydantic schemas) are frozen out of every later collection.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from stoker.settings import Settings

T = TypeVar("T")


def run_service_process(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Tune the collector, then run `main` to completion on the configured event loop."""
    tune_gc(settings.gc_threshold)
    return run_event_loop(main, settings.event_loop)


def tune_gc(threshold: int) -> None:
    """Collect the youngest generation every `threshold` allocations (0: leave Python's
    setting) and freeze what is alive now out of later collections."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def run_event_loop(main: Coroutine[Any, Any, T], kind: Literal["uvloop", "asyncio"]) -> T:
    """Run `main` to completion on a new event loop of the given kind."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
