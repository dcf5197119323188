"""The worker's side of its socket: the calls that have arrived, and which of them run as one.

A worker reads every call waiting on its socket before it runs any (`Frames`), so calls that
queued behind a slow prediction are seen together. `plan` groups them: predictions of one
model in a run of predictions become one group (at most `max_batch` calls), which the
worker answers with one `predict_batch` of its handler; every other call is a group of its
own, in the order it was sent. Nothing moves across a load, an unload or a ping, so an
unload sent after a prediction still runs after it.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

HEADER = struct.Struct("!I")
"""A frame is its length (4 bytes, network order) and that many bytes of pickle."""
_CHUNK = 1 << 16

Call = tuple[int, str, tuple[Any, ...]]
"""(call id, op, args) as the parent sends it."""


def plan(calls: list[Call], max_batch: int) -> list[list[Call]]:
    """The calls in groups, in the order they run (see the module's docstring)."""
    groups: list[list[Call]] = []
    open_groups: dict[str, list[Call]] = {}
    """The group of each model in the current run of predictions."""
    for call in calls:
        _, op, args = call
        if op != "predict" or max_batch <= 1:
            groups.append([call])
            open_groups.clear()
            continue
        name = args[0]
        group = open_groups.get(name)
        if group is None or len(group) >= max_batch:
            group = []
            groups.append(group)
            open_groups[name] = group
        group.append(call)
    return groups


class Frames:
    """Complete frames read from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._closed = False

    def next(self) -> list[bytes] | None:
        """Every frame that has arrived, waiting for one if none has; None once the parent
        has closed its end and every frame was taken."""
        while True:
            self._drain()
            frames = self._take()
            if frames:
                return frames
            if self._closed:
                return None
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                self._closed = True
            self._buffer += chunk

    def _drain(self) -> None:
        """Read what is waiting, without blocking."""
        while not self._closed:
            try:
                chunk = self._sock.recv(_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                self._closed = True
                return
            self._buffer += chunk

    def _take(self) -> list[bytes]:
        frames = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, offset)
            start = offset + HEADER.size
            if len(buffer) - start < size:
                break
            frames.append(bytes(buffer[start : start + size]))
            offset = start + size
        del buffer[:offset]
        return frames
