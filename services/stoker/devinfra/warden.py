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

import argparse
import sys
from pathlib import Path

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
        # Not `-m stoker.devinfra.warden`: the package imports this module first, and runpy
        # would run a second copy of it as __main__.
        "-c",
        "from stoker.devinfra.warden import main; raise SystemExit(main())",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stoker-devinfra-warden")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--owner-started", type=float, required=True)
    args = parser.parse_args(argv)
    wait_for_owner(procs.ProcessRef(pid=args.owner_pid, create_time=args.owner_started))

    # Here rather than at the top: the manager imports this module to start wardens.
    from stoker.devinfra.manager import DevInfra, run_sync

    infra = DevInfra(args.state_dir)
    # Our own pid file goes first, so `down` does not stop this very process.
    infra.layout.warden_pid_file.unlink(missing_ok=True)
    stopped = run_sync(infra.down(grace_s=WARDEN_GRACE_S))
    for result in stopped:
        print(f"owner {args.owner_pid} is gone: stopped {result.name} (pid {result.pid})")
    return 0
