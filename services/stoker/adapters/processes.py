"""Telling whether a process recorded earlier (by this process or one that has died since)
still runs, through psutil: used by the embedded log's leases and the local training
backend, which both outlive the processes that wrote their state.

A pid alone does not name a process: once it exits the kernel may hand the same pid to
another one. A `ProcessRef` pairs the pid with the process's start time, so a reused pid
reads as gone. A zombie (exited, not yet reaped by its parent) has finished too.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

import psutil

START_TIME_TOLERANCE_S = 1.0
"""How far two readings of one process's start time may differ: psutil adds the boot time
the kernel reports now, which moves when the system clock is adjusted. A pid handed out
again starts later than that (the old process must first exit and the pids wrap around)."""


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """One process on this host: its pid and its start time (seconds since the epoch)."""

    pid: int
    create_time: float


def this_process() -> ProcessRef:
    """The calling process (read again after a fork: the child has another pid)."""
    return _ref(os.getpid())


@cache
def _ref(pid: int) -> ProcessRef:
    return ProcessRef(pid, psutil.Process(pid).create_time())


def process_ref(pid: int) -> ProcessRef | None:
    """The process running as `pid` now, None when there is none."""
    try:
        return ProcessRef(pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process `ref` names runs (not exited, not a zombie)."""
    if ref.pid <= 0:
        return False
    try:
        process = psutil.Process(ref.pid)
        if abs(process.create_time() - ref.create_time) > START_TIME_TOLERANCE_S:
            return False
        return process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists, under another user


def pid_exists(pid: int) -> bool:
    """Whether any process runs as `pid` (for records written without a start time)."""
    return pid > 0 and psutil.pid_exists(pid)


@cache
def host_id() -> str:
    """Where a pid means the same process as here: the host's name, and on Linux the pid
    namespace (two containers may share a host name, never a pid namespace, unless they
    share their processes too)."""
    name = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return name
    return f"{name}/pidns:{namespace}"
