"""Worker processes that hold models and run their predictions, off the event loop.

Each worker is a spawned process joined to the event loop by a socket pair: the loop writes a
framed, pickled call and reads the framed answer with asyncio streams, so a call costs one
wake-up of the worker and one of the loop (no executor threads in between). A worker runs
its calls one at a time, in the order they were sent: an unload sent after a prediction runs
after it. The exception: predictions of one model that queued together (sent while the
worker was busy) run as one `predict_batch` of the handler, when it has one, up to
`max_batch` calls (`batching.py`). A worker that dies (its socket ends) fails the calls it
had with `WorkerLost` and is replaced by a fresh process holding no model.

The worker side calls the handler module's functions: `load_artifact(path)`,
`parse_request(body)`, `predict(model, request) -> bytes` and, optionally,
`predict_batch(model, requests) -> list[bytes]` (one answer per request, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import multiprocessing
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from stoker.inference.fleet.batching import HEADER, Call, Frames, plan
from stoker.inference.fleet.timing import WorkerStamps

log = structlog.get_logger("stoker.endpoint")

_HEADER = HEADER
_CLOSE_WAIT_S = 10.0

# The worker process's state: its handler and the models it holds.
_handler: ModuleType | None = None
_models: dict[str, Any] = {}
_batch_limit = 1
"""The largest batch the worker runs: 1 if its handler has no `predict_batch`."""


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


# ------------------------------------------------------------------ worker side


def _loaded_handler() -> ModuleType:
    if _handler is None:  # pragma: no cover - _serve sets it first
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


def _parse(handler: ModuleType, body: bytes) -> Any:
    try:
        return handler.parse_request(body)
    except Exception as exc:
        field = getattr(exc, "field", None)
        problem = getattr(exc, "problem", None)
        if isinstance(field, str) and isinstance(problem, str):
            raise RequestError(field, problem) from None
        raise RequestError("<body>", str(exc)) from None


def _predict(name: str, body: bytes) -> tuple[bytes, float, float]:
    """The answer, and when `predict` started and ended (perf_counter)."""
    model = _models.get(name)
    if model is None:
        raise NotResident(name)
    handler = _loaded_handler()
    request = _parse(handler, body)
    started = time.perf_counter()
    try:
        answer: bytes = handler.predict(model, request)
    except Exception as exc:
        raise PredictError(f"{type(exc).__name__}: {exc}") from None
    return answer, started, time.perf_counter()


def _predict_batch(name: str, bodies: list[bytes]) -> list[tuple[bool, object]]:
    """Each call's (ok, answer or error), from one `predict_batch` of the handler over the
    requests that parse; a failure of the batch fails each of them."""
    model = _models.get(name)
    if model is None:
        return [(False, NotResident(name))] * len(bodies)
    handler = _loaded_handler()
    results: list[tuple[bool, object]] = [(False, RuntimeError("not run"))] * len(bodies)
    parsed: list[tuple[int, Any]] = []
    for i, body in enumerate(bodies):
        try:
            parsed.append((i, _parse(handler, body)))
        except RequestError as exc:
            results[i] = (False, exc)
    if not parsed:
        return results
    started = time.perf_counter()
    try:
        answers: list[bytes] = handler.predict_batch(model, [request for _, request in parsed])
        if len(answers) != len(parsed):
            raise ValueError(f"{len(answers)} answers to {len(parsed)} requests")
    except Exception as exc:
        error = PredictError(f"{type(exc).__name__}: {exc}")
        for i, _ in parsed:
            results[i] = (False, error)
        return results
    ended = time.perf_counter()
    for (i, _), answer in zip(parsed, answers, strict=True):
        results[i] = (True, (answer, started, ended))
    return results


def _max_batch() -> int:
    return _batch_limit


def _ping() -> int:
    return len(_models)


_OPS: dict[str, Callable[..., object]] = {
    "load": _load,
    "unload": _unload,
    "predict": _predict,
    "ping": _ping,
    "max_batch": _max_batch,
}


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _answer(call_id: int, ok: bool, value: object, picked: float) -> bytes:
    if ok:
        return _frame((call_id, True, (value, picked)))
    try:
        return _frame((call_id, False, value))
    except Exception:  # an error that does not pickle still gets an answer
        return _frame((call_id, False, RuntimeError(repr(value))))


def _run(group: list[Call]) -> bytes:
    """The framed answers of one group of `plan`."""
    picked = time.perf_counter()
    if len(group) > 1:
        name = group[0][2][0]
        results = _predict_batch(name, [args[1] for _, _, args in group])
        return b"".join(
            _answer(call_id, ok, value, picked)
            for (call_id, _, _), (ok, value) in zip(group, results, strict=True)
        )
    [(call_id, op, args)] = group
    try:
        return _answer(call_id, True, _OPS[op](*args), picked)
    except Exception as exc:
        return _answer(call_id, False, exc, picked)


def _serve(sock: socket.socket, handler: str, max_batch: int) -> None:
    """The worker process: answer calls until the parent closes the socket."""
    # The worker process's one handler and batch limit, set once at start.
    global _handler, _batch_limit  # noqa: PLW0603
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread of numeric work per worker: the workers already share the cores between
    # them, and a BLAS pool per worker would oversubscribe them. Set before the handler
    # imports numpy, which reads these once; a value the operator set is kept.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    _handler = importlib.import_module(handler)
    if not callable(getattr(_handler, "predict_batch", None)):
        max_batch = 1
    _batch_limit = max_batch
    frames = Frames(sock)
    with sock:
        while (payloads := frames.next()) is not None:
            calls: list[Call] = [pickle.loads(payload) for payload in payloads]
            for group in plan(calls, max_batch):
                sock.sendall(_run(group))


# ------------------------------------------------------------------ parent side


class Worker:
    """One worker process (replaced if it dies)."""

    def __init__(self, index: int, handler: str, max_batch: int = 1) -> None:
        self.index = index
        self._handler = handler
        self._max_batch = max_batch
        self.max_batch = 1
        """The largest batch the process runs (1 if its handler cannot batch); known once
        started."""
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._up = asyncio.Event()
        self._process: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._closing = False
        self._broken: str | None = None
        self.restarts = 0

    async def start(self) -> None:
        """Start the process and wait until it has imported the handler, so the first load
        pays neither."""
        await self._spawn()
        self.max_batch = await self._call("max_batch")

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        # spawn, not fork: the parent runs an event loop and threads that a fork would copy
        # mid-state.
        process = multiprocessing.get_context("spawn").Process(
            target=_serve,
            args=(child, self._handler, self._max_batch),
            name=f"stoker-endpoint-worker-{self.index}",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        child.close()
        reader, writer = await asyncio.open_connection(sock=parent)
        self._process, self._writer = process, writer
        self._reading = asyncio.ensure_future(self._read(reader, self._pending))
        self._up.set()

    async def _read(
        self, reader: asyncio.StreamReader, pending: dict[int, asyncio.Future[Any]]
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                payload = await reader.readexactly(_HEADER.unpack(header)[0])
                call_id, ok, value = pickle.loads(payload)
                future = pending.pop(call_id, None)
                if future is None or future.done():
                    continue
                if ok:
                    # (the op's answer, when the worker picked the call up, when it came back)
                    answer, picked = value
                    future.set_result((answer, picked, time.perf_counter()))
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self._lost(pending)

    async def _lost(self, pending: dict[int, asyncio.Future[Any]]) -> None:
        """The socket ended: fail what the worker had, and replace it unless closing."""
        self._up.clear()
        process = self._process
        await asyncio.to_thread(process.join, _CLOSE_WAIT_S)
        lost = WorkerLost(f"worker {self.index} died (exit code {process.exitcode})")
        for future in pending.values():
            if not future.done():
                future.set_exception(lost)
        pending.clear()
        if self._writer is not None:
            self._writer.close()
        if not self._closing:
            self.restarts += 1
            self._pending = {}
            log.error("worker died; starting another", worker=self.index, code=process.exitcode)
            try:
                await self._spawn()
            except Exception as exc:
                log.exception("worker could not be started again", worker=self.index)
                # Every call, waiting or to come, fails at once instead of waiting forever.
                self._broken = f"worker {self.index} could not be started again: {exc!r}"
                self._up.set()

    async def _call(self, op: str, *args: Any) -> Any:
        answer, _, _, _ = await self._timed_call(op, *args)
        return answer

    async def _timed_call(self, op: str, *args: Any) -> tuple[Any, float, float, float]:
        """The op's answer, when the call was written, when the worker picked it up and
        when its answer was delivered here (perf_counter)."""
        await self._up.wait()
        if self._broken is not None:
            raise WorkerLost(self._broken)
        if self._writer is None:  # pragma: no cover - _up is set only after _spawn
            raise WorkerLost(f"worker {self.index} is not running")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        frame = _frame((call_id, op, args))
        # Stamped before the write: the worker may pick the call up before write() returns.
        sent = time.perf_counter()
        self._writer.write(frame)
        try:
            # Flow control for a large body: wait while the socket's buffer is full.
            await self._writer.drain()
        except ConnectionError as exc:
            raise WorkerLost(f"worker {self.index} died: {exc}") from exc
        answer, picked, delivered = await future
        return answer, sent, picked, delivered

    async def load(self, name: str, path: Path) -> float:
        """Load the model; returns the worker's load time in seconds. LoadError, WorkerLost."""
        seconds: float = await self._call("load", name, str(path))
        return seconds

    async def unload(self, name: str) -> bool:
        unloaded: bool = await self._call("unload", name)
        return unloaded

    async def predict(self, name: str, body: bytes) -> tuple[bytes, WorkerStamps]:
        """The answer and the call's stamps on both sides of the socket. NotResident,
        RequestError, PredictError, WorkerLost."""
        (answer, started, ended), sent, picked, delivered = await self._timed_call(
            "predict", name, body
        )
        return answer, WorkerStamps(sent, picked, started, ended, delivered)

    async def close(self) -> None:
        """Close the socket (the worker ends after its current call) and reap the process;
        one that does not end in time is terminated."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reading is not None:
            await self._reading
        process = self._process
        if process is not None and process.is_alive():  # pragma: no cover - a stuck model
            process.terminate()
            await asyncio.to_thread(process.join, _CLOSE_WAIT_S)
