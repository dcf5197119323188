"""Server processes: start detached, recognise by pid and start time, stop politely then firmly.

A pid alone can be reused by an unrelated process after ours exits, so every pid file
also records the process start time from /proc; a mismatch means "not ours".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

POLL_INTERVAL_S = 0.1
_PR_SET_PDEATHSIG = 1
KILL_WAIT_S = 10.0

# Children started by this interpreter, kept so they are reaped (no zombies, no
# "subprocess still running" warnings) when this same process stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_ticks: int
    """Field 22 of /proc/<pid>/stat: start time since boot, in clock ticks."""

    def to_text(self) -> str:
        return f"{self.pid} {self.start_ticks}\n"

    @classmethod
    def from_text(cls, text: str) -> ProcessRef | None:
        parts = text.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        return cls(pid=int(parts[0]), start_ticks=int(parts[1]))


def parse_proc_stat(text: str) -> tuple[str, int]:
    """(state letter, start ticks) from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces or
    parentheses, so fields are counted from the last ')'.
    """
    close = text.rfind(")")
    if close < 0:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    rest = text[close + 1 :].split()
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    if len(rest) < 20:
        raise ValueError(f"truncated /proc stat line: {text[:80]!r}")
    return rest[0], int(rest[19])


def _read_stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_proc_stat(text)


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process that was started runs."""
    stat = _read_stat(ref.pid)
    if stat is None or stat[1] != ref.start_ticks:
        return False
    child = _CHILDREN.get(ref.pid)
    if child is not None:
        # Our own child: waitpid is the authority, and it reaps. /proc alone would show a
        # JVM whose main thread already ended as a zombie while its other threads still run.
        if child.poll() is None:
            return True
        del _CHILDREN[ref.pid]
        return False
    # Someone else's child (another `stoker` process started it): a zombie has finished.
    return stat[0] not in ("Z", "X")


def _die_with_parent(parent: int) -> Callable[[], None]:
    # Looked up here, before fork: the child must not load libraries.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arrange() -> None:
        # Runs in the child between fork and exec.
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            # The parent died before the request took effect.
            os._exit(1)

    return arrange


def launch(
    command: list[str],
    *,
    cwd: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> ProcessRef:
    """Start a server in its own session (a Ctrl-C in the caller's terminal does not reach
    it) with stdout and stderr appended to its log file.

    `die_with_parent` asks Linux to SIGTERM the server when this process dies, for callers
    such as a test session that may be killed before its cleanup runs.
    """
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
            # The hook only calls prctl and getppid, resolved before fork: no locks that
            # another thread could hold at fork time, the hazard this lint warns about.
            preexec_fn=_die_with_parent(os.getpid()) if die_with_parent else None,  # noqa: PLW1509
        )
    _CHILDREN[child.pid] = child
    stat = _read_stat(child.pid)
    if stat is None:
        raise RuntimeError(f"process {child.pid} vanished before it could be inspected")
    return ProcessRef(pid=child.pid, start_ticks=stat[1])


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
    # Checked right before signalling so a reused pid is never hit.
    if is_alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signum)


async def wait_gone(ref: ProcessRef, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(ref):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
    return True


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
