"""Worker processes that hold models and run their predictions, off the event loop.

Each worker is a one-process pool of its own, so calls to one worker run in the order they
were sent: an unload sent after a prediction runs after it. The event loop only pickles a
request body across and the answer's bytes back. A worker that dies is replaced by a fresh
one (holding no model); the calls it had are answered `WorkerLost`.

The worker side calls the handler module's functions: `load_artifact(path)`,
`parse_request(body)` and `predict(model, request) -> bytes`.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

# The worker process's state: its handler and the models it holds.
_handler: ModuleType | None = None
_models: dict[str, Any] = {}


class LoadError(Exception):
    """The artifact could not be read as a model; the message is the reason."""


class NotResident(Exception):
    """The worker does not hold the model (it was evicted, or the worker was replaced)."""


class RequestError(Exception):
    """The request body is not what the model takes: (field, problem)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field = field
        self.problem = problem


class PredictError(Exception):
    """The model raised while predicting; the message is the reason."""


class WorkerLost(Exception):
    """The worker process died while it had the call."""


def _init(handler: str) -> None:
    global _handler  # noqa: PLW0603 - the worker process's one handler, set once at start
    _handler = importlib.import_module(handler)


def _loaded_handler() -> ModuleType:
    if _handler is None:  # pragma: no cover - _init always runs first
        raise RuntimeError("worker started without a handler")
    return _handler


def _load(name: str, path: str) -> float:
    started = time.perf_counter()
    try:
        _models[name] = _loaded_handler().load_artifact(Path(path))
    except Exception as exc:
        raise LoadError(str(exc) or type(exc).__name__) from None
    return time.perf_counter() - started


def _unload(name: str) -> bool:
    return _models.pop(name, None) is not None


def _predict(name: str, body: bytes) -> tuple[bytes, float]:
    model = _models.get(name)
    if model is None:
        raise NotResident(name)
    handler = _loaded_handler()
    try:
        request = handler.parse_request(body)
    except Exception as exc:
        field = getattr(exc, "field", None)
        problem = getattr(exc, "problem", None)
        if isinstance(field, str) and isinstance(problem, str):
            raise RequestError(field, problem) from None
        raise RequestError("<body>", str(exc)) from None
    started = time.perf_counter()
    try:
        answer: bytes = handler.predict(model, request)
    except Exception as exc:
        raise PredictError(f"{type(exc).__name__}: {exc}") from None
    return answer, time.perf_counter() - started


def _ping() -> int:
    return len(_models)


class Worker:
    """One worker process (replaced if it dies)."""

    def __init__(self, index: int, handler: str) -> None:
        self.index = index
        self._handler = handler
        self._pool = self._start()
        self.restarts = 0

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs an event loop and threads that a fork would copy
        # mid-state.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(self._handler,),
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool as exc:
            if pool is self._pool:
                self.restarts += 1
                self._pool = self._start()
                pool.shutdown(wait=False, cancel_futures=True)
            raise WorkerLost(f"worker {self.index} died: {exc}") from exc

    async def start(self) -> None:
        """Start the process and import the handler, so the first load pays neither."""
        await self._call(_ping)

    async def load(self, name: str, path: Path) -> float:
        """Load the model; returns the worker's load time in seconds. LoadError, WorkerLost."""
        return await self._call(_load, name, str(path))

    async def unload(self, name: str) -> bool:
        return await self._call(_unload, name)

    async def predict(self, name: str, body: bytes) -> tuple[bytes, float]:
        """The answer and the model's own predict time. NotResident, RequestError,
        PredictError, WorkerLost."""
        return await self._call(_predict, name, body)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
