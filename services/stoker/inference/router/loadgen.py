"""Open-loop load: Poisson arrivals at a fixed rate, latency measured from the schedule.

A closed-loop client (N workers, each waiting for its reply before sending again) slows
down when the server does and so hides queueing. Here every request has a scheduled send
time drawn from a Poisson process, independent of replies; latency runs from that
scheduled time, so time spent waiting for a free connection counts too.

The HTTP/1.1 client is a small keep-alive pool over asyncio streams: a general client
costs more CPU per request than the server under test, and the generator shares the
machine with it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run measured. Latencies are seconds, sorted, successful requests only."""

    rate: float
    sent: int
    ok: int
    statuses: dict[str, int]
    elapsed_s: float
    latencies: list[float] = field(repr=False)

    @property
    def throughput(self) -> float:
        """Successful replies per second over the run."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..100) of successful latencies, in seconds."""
        if not self.latencies:
            return math.inf
        rank = max(1, math.ceil(q / 100.0 * len(self.latencies)))
        return self.latencies[rank - 1]

    @property
    def max(self) -> float:
        return self.latencies[-1] if self.latencies else math.inf

    def summary_ms(self) -> dict[str, float]:
        return {
            "p50": self.percentile(50) * 1000,
            "p95": self.percentile(95) * 1000,
            "p99": self.percentile(99) * 1000,
            "max": self.max * 1000,
        }


class HttpError(Exception):
    """The server closed the connection or sent something that is not HTTP/1.1."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + body)
        line = await self.reader.readline()
        if not line:
            raise HttpError("connection closed before a reply")
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {line!r}")
        status = int(parts[1])
        length = -1
        chunked = False
        while True:
            header = await self.reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            payload = bytearray()
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                payload += await self.reader.readexactly(size + 2)
                del payload[-2:]
            return status, bytes(payload)
        if length < 0:
            raise HttpError("reply has neither content-length nor chunked encoding")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host, at most `max_connections` at once."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http://host:port URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        extra = dict(headers or {})
        for name, value in extra.items():
            # A line break would end the header early and let the rest forge new ones.
            if any(c in name + value for c in "\r\n"):
                raise ValueError(f"header {name!r} holds a line break")
        # Sent with every request, e.g. `Authorization: Bearer <token>`.
        self._extra = "".join(f"{name}: {value}\r\n" for name, value in extra.items())

    def _head(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                conn = _Connection(reader, writer)
            try:
                result = await conn.request(self._head(path, body), body)
            except BaseException:
                conn.close()
                raise
            self._idle.append(conn)
            return result

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def run_load(
    url: str,
    path: str,
    make_body: Callable[[int], bytes],
    *,
    rate: float,
    duration_s: float,
    max_requests: int | None = None,
    max_connections: int = 256,
    timeout_s: float = 10.0,
    seed: int = 0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Send Poisson arrivals at `rate`/s for `duration_s` (or `max_requests`), then wait.
    `headers` go with every request (the bearer token)."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration_s must be > 0, got {rate} and {duration_s}")
    rng = random.Random(seed)
    pool = HttpPool(url, max_connections=max_connections, headers=headers)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                status, _ = await pool.post(path, make_body(i))
        except TimeoutError:
            statuses["timeout"] += 1
            return
        except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
            statuses[type(exc).__name__] += 1
            return
        statuses[str(status)] += 1
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)

    limit = max_requests if max_requests is not None else math.inf
    start = time.perf_counter()
    at = start
    sent = 0
    try:
        while sent < limit:
            at += rng.expovariate(rate)
            if at - start > duration_s:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the next arrival's scheduled time
            task = asyncio.create_task(one(sent, at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        await pool.close()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return LoadResult(rate, sent, len(latencies), dict(statuses), elapsed, latencies)
