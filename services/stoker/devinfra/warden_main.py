"""The warden's process: wait for the owner of a state folder, then stop its servers.

Apart from `warden` (which the manager imports to start one) so that the manager and the
warden do not import each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stoker.devinfra import procs
from stoker.devinfra.manager import DevInfra, run_sync
from stoker.devinfra.warden import WARDEN_GRACE_S, wait_for_owner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stoker-devinfra-warden")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--owner-started", type=float, required=True)
    args = parser.parse_args(argv)
    wait_for_owner(procs.ProcessRef(pid=args.owner_pid, create_time=args.owner_started))

    infra = DevInfra(args.state_dir)
    # Our own pid file goes first, so `down` does not stop this very process.
    infra.layout.warden_pid_file.unlink(missing_ok=True)
    stopped = run_sync(infra.down(grace_s=WARDEN_GRACE_S))
    for result in stopped:
        print(f"owner {args.owner_pid} is gone: stopped {result.name} (pid {result.pid})")
    return 0
