"""Server processes: start detached, recognise by pid and start time, stop politely then firmly.

A pid alone can be reused by an unrelated process after ours exits, so every pid file
also records the process start time (psutil's `create_time`); a mismatch means "not ours".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

KILL_WAIT_S = 10.0
START_TIME_TOLERANCE_S = 1.0
"""How far two readings of one process's start time may differ: psutil adds the boot time
the kernel reports now, which moves when the system clock is adjusted."""

# Children started by this interpreter, kept so they are reaped (no zombies, no
# "subprocess still running" warnings) when this same process stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    create_time: float
    """Start time in seconds since the epoch, as psutil reports it."""

    def to_text(self) -> str:
        return f"{self.pid} {self.create_time!r}\n"

    @classmethod
    def from_text(cls, text: str) -> ProcessRef | None:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        pid, started = int(parts[0]), parts[1]
        if started.isdigit():
            # Written by an earlier version: clock ticks since boot.
            return cls(pid=pid, create_time=_ticks_to_epoch(int(started)))
        try:
            return cls(pid=pid, create_time=float(started))
        except ValueError:
            return None


def _ticks_to_epoch(ticks: int) -> float:
    return ticks / os.sysconf("SC_CLK_TCK") + psutil.boot_time()


def _process(ref: ProcessRef) -> psutil.Process | None:
    """The process `ref` names, or None when that pid is gone or now another process."""
    try:
        process = psutil.Process(ref.pid)
        started = process.create_time()
    except psutil.NoSuchProcess:
        return None
    if abs(started - ref.create_time) > START_TIME_TOLERANCE_S:
        return None
    return process


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process that was started runs."""
    process = _process(ref)
    if process is None:
        return False
    child = _CHILDREN.get(ref.pid)
    if child is not None:
        # Our own child: waitpid is the authority, and it reaps. The process table alone
        # would show a JVM whose main thread already ended as a zombie while its other
        # threads still run.
        if child.poll() is None:
            return True
        _CHILDREN.pop(ref.pid, None)
        return False
    # Someone else's child (another `stoker` process started it): a zombie has finished.
    try:
        return process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def launch(
    command: list[str],
    *,
    cwd: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessRef:
    """Start a server in its own session (a Ctrl-C in the caller's terminal does not reach
    it, and it outlives the caller) with stdout and stderr appended to its log file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(
            f"\n==> {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command[:1])} started\n".encode()
        )
        log.flush()
        child = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    _CHILDREN[child.pid] = child
    try:
        started = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess as exc:
        raise RuntimeError(f"process {child.pid} vanished before it could be inspected") from exc
    return ProcessRef(pid=child.pid, create_time=started)


def write_pid_file(path: Path, ref: ProcessRef) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ref.to_text())
    tmp.replace(path)


def read_pid_file(path: Path) -> ProcessRef | None:
    try:
        return ProcessRef.from_text(path.read_text())
    except FileNotFoundError:
        return None


def _signal(ref: ProcessRef, signum: int) -> None:
    # Looked up right before signalling so a reused pid is never hit.
    process = _process(ref)
    if process is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def wait_gone_blocking(ref: ProcessRef, timeout_s: float | None = None) -> bool:
    """True once the process has ended (reaped, if it is our child); False if it still
    runs after `timeout_s` (None: wait as long as it runs). Blocks the thread."""
    child = _CHILDREN.get(ref.pid)
    if child is not None:
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        _CHILDREN.pop(ref.pid, None)
        return True
    process = _process(ref)
    if process is None:
        return True
    try:
        # psutil waits on a pidfd where Linux offers one, so nothing polls meanwhile.
        process.wait(timeout_s)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


async def wait_gone(ref: ProcessRef, timeout_s: float) -> bool:
    """True once the process has ended, False if it still runs after `timeout_s`."""
    return await asyncio.to_thread(wait_gone_blocking, ref, timeout_s)


async def stop(ref: ProcessRef, grace_s: float) -> bool:
    """SIGTERM, wait up to `grace_s`, then SIGKILL. True when it stopped within the grace."""
    if not is_alive(ref):
        return True
    _signal(ref, signal.SIGTERM)
    if await wait_gone(ref, grace_s):
        return True
    _signal(ref, signal.SIGKILL)
    await wait_gone(ref, KILL_WAIT_S)
    return False


async def kill(ref: ProcessRef) -> None:
    """SIGKILL without warning, as a crash would; returns once the process is gone."""
    _signal(ref, signal.SIGKILL)
    await wait_gone(ref, KILL_WAIT_S)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not bind this port now. SO_REUSEADDR as the JVM sets it, so
    sockets lingering in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel reports free right now (held open together so they
    differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
