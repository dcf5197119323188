"""Stops a state folder's servers once the process that started them is gone.

A test session starts servers with `die_with_caller`: if it is killed before its cleanup
runs, nothing else would stop them. The servers run in sessions of their own (a Ctrl-C in
a terminal must not reach them), so they do not die with their parent by themselves.
Linux's parent-death signal would arrange that, but only through `prctl` by hand, only on
Linux, and it fires when the forking *thread* ends rather than the process. Instead one
small watcher process per state folder (this module) waits for the owner with psutil (a
pidfd on Linux, so it sleeps until the owner exits) and then runs `down` on the folder.
It runs in a session of its own too; the owner's own `down` stops it first.

Started by `ensure` (see `command` for its command line); it logs to `logs/warden.log`.
"""

from __future__ import annotations

import sys

import psutil

from stoker.devinfra import procs
from stoker.devinfra.layout import StateLayout

LOG_NAME = "warden"
WARDEN_GRACE_S = 10.0
"""Grace the servers get when the warden stops them (as `stoker dev infra down`)."""


def command(layout: StateLayout, owner: procs.ProcessRef) -> list[str]:
    """The warden's command line for the servers of `layout`, owned by `owner`."""
    return [
        sys.executable,
        # Not `-m`: the package imports the warden's modules first, and runpy would run a
        # second copy of the entry module as __main__.
        "-c",
        "from stoker.devinfra.warden_main import main; raise SystemExit(main())",
        "--state-dir",
        str(layout.root),
        "--owner-pid",
        str(owner.pid),
        "--owner-started",
        repr(owner.create_time),
    ]


def owner_ref() -> procs.ProcessRef:
    """This process, as the owner of the servers it starts."""
    me = psutil.Process()
    return procs.ProcessRef(pid=me.pid, create_time=me.create_time())


def ensure(layout: StateLayout, owner: procs.ProcessRef | None = None) -> procs.ProcessRef:
    """The warden of `layout`, started for `owner` (default: this process) unless one runs."""
    running = procs.read_pid_file(layout.warden_pid_file)
    if running is not None and procs.is_alive(running):
        return running
    ref = procs.launch(
        command(layout, owner or owner_ref()),
        cwd=layout.root,
        log_file=layout.log_file(LOG_NAME),
    )
    procs.write_pid_file(layout.warden_pid_file, ref)
    return ref


def wait_for_owner(owner: procs.ProcessRef) -> None:
    """Blocks until the owner has ended (at once if it already has)."""
    if procs.is_alive(owner):
        procs.wait_gone_blocking(owner)
