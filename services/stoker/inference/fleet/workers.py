"""Worker processes that hold models and run their predictions, off the event loop.

Each worker is a spawned process joined to the event loop by a socket pair: the loop writes a
framed, pickled call and reads the framed answer with asyncio streams, so a call costs one
wake-up of the worker and one of the loop (no executor threads in between). A worker runs
its calls one at a time, in the order they were sent: an unload sent after a prediction runs
after it. A worker that dies (its socket ends) fails the calls it had with `WorkerLost` and
is replaced by a fresh process holding no model.

The worker side calls the handler module's functions: `load_artifact(path)`,
`parse_request(body)` and `predict(model, request) -> bytes`.
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
import struct
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from stoker.inference.fleet.timing import WorkerStamps

log = structlog.get_logger("stoker.endpoint")

_HEADER = struct.Struct("!I")
_CLOSE_WAIT_S = 10.0

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


def _predict(name: str, body: bytes) -> tuple[bytes, float, float]:
    """The answer, and when `predict` started and ended (perf_counter)."""
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
    return answer, started, time.perf_counter()


def _ping() -> int:
    return len(_models)


_OPS: dict[str, Callable[..., object]] = {
    "load": _load,
    "unload": _unload,
    "predict": _predict,
    "ping": _ping,
}


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the parent closed its end."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buffer)


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _serve(sock: socket.socket, handler: str) -> None:
    """The worker process: answer calls until the parent closes the socket."""
    global _handler  # noqa: PLW0603 - the worker process's one handler, set once at start
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread of numeric work per worker: the workers already share the cores between
    # them, and a BLAS pool per worker would oversubscribe them. Set before the handler
    # imports numpy, which reads these once; a value the operator set is kept.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    _handler = importlib.import_module(handler)
    with sock:
        while (header := _recv_exact(sock, _HEADER.size)) is not None:
            payload = _recv_exact(sock, _HEADER.unpack(header)[0])
            if payload is None:
                return
            picked = time.perf_counter()
            call_id, op, args = pickle.loads(payload)
            try:
                answer = _frame((call_id, True, (_OPS[op](*args), picked)))
            except Exception as exc:
                try:
                    answer = _frame((call_id, False, exc))
                except Exception:  # an error that does not pickle still gets an answer
                    answer = _frame((call_id, False, RuntimeError(repr(exc))))
            sock.sendall(answer)


# ------------------------------------------------------------------ parent side


class Worker:
    """One worker process (replaced if it dies)."""

    def __init__(self, index: int, handler: str) -> None:
        self.index = index
        self._handler = handler
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
        await self._call("ping")

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        # spawn, not fork: the parent runs an event loop and threads that a fork would copy
        # mid-state.
        process = multiprocessing.get_context("spawn").Process(
            target=_serve,
            args=(child, self._handler),
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
        self._writer.write(_frame((call_id, op, args)))
        sent = time.perf_counter()
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
