"""The floor under the endpoint's hot path: the same two cross-process wake-ups with no
endpoint code at all.

A spawned echo process joined to an event loop by a socket pair, as an endpoint worker is:
the loop writes a small message and waits; the echo process wakes, computes for `busy_s`
(standing in for a model's predict, so the loop's process has gone to sleep meanwhile), and
answers. A round trip minus the echo's own compute is what the machine charges for handing
a call to another process and back: the engine's `queue` + `return` phases, bare.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import struct
import time

_STAMPS = struct.Struct("!dd")


def _echo(sock: socket.socket, busy_s: float) -> None:
    with sock:
        while sock.recv(64):
            started = time.perf_counter()
            while time.perf_counter() - started < busy_s:
                pass
            sock.sendall(_STAMPS.pack(started, time.perf_counter()))


async def handoff_floor(count: int, busy_s: float) -> list[float]:
    """`count` round trips' hand-off cost (seconds): the round trip minus the echo's
    compute."""
    parent, child = socket.socketpair()
    process = multiprocessing.get_context("spawn").Process(
        target=_echo, args=(child, busy_s), daemon=True
    )
    process.start()
    child.close()
    reader, writer = await asyncio.open_connection(sock=parent)
    costs = []
    try:
        for _ in range(count):
            sent = time.perf_counter()
            writer.write(b"x")
            started, ended = _STAMPS.unpack(await reader.readexactly(_STAMPS.size))
            costs.append(time.perf_counter() - sent - (ended - started))
    finally:
        writer.close()
        await asyncio.to_thread(process.join, 10)
    return costs
