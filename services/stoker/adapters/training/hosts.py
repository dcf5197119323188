"""The hosts of one local training job: `algo-1` .. `algo-N`, one process each.

A job of one instance is its own host: its `/opt/ml` tree, logs and exit file sit in the
job folder, as they always did. A job of N > 1 instances gives each host a folder of its
own, `<job>/hosts/algo-k/`, holding that host's `/opt/ml` tree (its channels, its share of
a `ShardedByS3Key` channel, its model and checkpoint folders), `logs.txt`, and the exit and
start files of its supervisor: every host is a process under a supervisor of its own session
(`supervise.py`), so each outlives the backend that started it and records how it ended.

`HostGroup` watches the hosts of a running job together: it ends when every host has ended,
or when one has failed (the caller then stops the others, as SageMaker ends a job when one
of its instances fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.adapters.processes import ProcessRef, is_alive
from stoker.adapters.training import local_state as state
from stoker.adapters.training.container import (
    HOST,
    JobPaths,
    LocalJobRequest,
    container_env,
    local_path,
    supervised_command,
)
from stoker.adapters.training.local_support import gone
from stoker.adapters.training.processing import local_command, processing_env
from stoker.core.job_kind import JobKind
from stoker.core.policy import LocalRunRules
from stoker.logs import get_logger

log = get_logger("stoker.adapters.training.hosts")

HOSTS_FOLDER = "hosts"


def host_paths(paths: JobPaths, spec: LocalJobRequest, host: str) -> JobPaths:
    """Where `host`'s files live: the job folder itself for a single-host job."""
    if spec.instance_count == 1:
        return paths
    return JobPaths(paths.root / HOSTS_FOLDER / host)


def checkpoint_in_place(spec: LocalJobRequest) -> bool:
    """A single-host job whose CheckpointConfig names a local folder uses it in place;
    every other job with a CheckpointConfig copies to and from it (`checkpoints.py`)."""
    return (
        spec.checkpoint_uri is not None
        and spec.instance_count == 1
        and local_path(spec.checkpoint_uri) is not None
    )


def checkpoint_folder(paths: JobPaths, spec: LocalJobRequest) -> Path:
    """Where a host's process keeps its checkpoints (`paths`: the host's own)."""
    if spec.checkpoint_uri and checkpoint_in_place(spec):
        folder = local_path(spec.checkpoint_uri)
        assert folder is not None  # checkpoint_in_place says so
        return folder
    return paths.root / spec.checkpoint_local_path.lstrip("/")


def process_env_and_command(
    paths: JobPaths, spec: LocalJobRequest, host: str = HOST
) -> tuple[dict[str, str], list[str]]:
    """The environment and command of one host's process (`paths`: the host's own):
    SageMaker's training contract for a training job, Processing's (its /opt/ml arguments
    moved under the job folder) otherwise."""
    if spec.kind is JobKind.TRAINING:
        return container_env(paths, spec, checkpoint_folder(paths, spec), host), spec.command
    return processing_env(paths, spec), local_command(spec.command, paths.root)


@dataclass(frozen=True, slots=True)
class HostProcess:
    """One host's supervisor, however it is watched: `wait` returns when it has ended,
    `signal` reaches its process group, `returncode` is its own exit status if known."""

    host: str
    paths: JobPaths
    wait: Callable[[], Awaitable[Any]]
    signal: Callable[[signal.Signals], None]
    returncode: Callable[[], int | None]


class HostGroup:
    """The hosts of one job, watched together.

    `exited` is done when every host has ended; `failed` when one ended with a non-zero (or
    no) exit code, with that host's name. `on_exit(host)` runs as each host ends (the
    backend saves its checkpoints then); its errors are logged, never lost."""

    def __init__(
        self,
        hosts: list[HostProcess],
        on_exit: Callable[[str], Awaitable[None]],
    ) -> None:
        self.hosts = hosts
        self.codes: dict[str, int | None] = {}
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._on_exit = on_exit
        self._waits = [asyncio.ensure_future(self._one(host)) for host in hosts]
        self.exited: asyncio.Future[Any] = asyncio.ensure_future(self._all())

    async def _all(self) -> None:
        await asyncio.gather(*self._waits)

    async def _one(self, host: HostProcess) -> None:
        await host.wait()
        code = state.exit_code(host.paths)
        # No exit file: the supervisor itself was killed (SIGKILL after the grace period).
        self.codes[host.host] = host.returncode() if code is None else code
        try:
            await self._on_exit(host.host)
        except Exception:  # one host's bookkeeping must not hide the others' ends
            log.exception("after a host ended", host=host.host)
        if self.codes[host.host] != 0 and not self.failed.done():
            self.failed.set_result(host.host)

    def signal(self, signum: signal.Signals) -> None:
        """`signum` to the process group of every host still running."""
        for host in self.hosts:
            if host.host not in self.codes:
                with contextlib.suppress(ProcessLookupError):
                    host.signal(signum)

    async def terminate(self, grace_s: float) -> None:
        """SIGTERM to every host still running, SIGKILL after `grace_s`; returns when every
        host has ended."""
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), timeout=grace_s)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.exited

    def cancel(self) -> None:
        for wait in self._waits:
            wait.cancel()
        self.exited.cancel()
        if not self.failed.done():
            self.failed.cancel()


def first_failure(
    paths: JobPaths, spec: LocalJobRequest, codes: dict[str, int | None]
) -> tuple[str, int | None] | None:
    """The host that failed first and its exit code (None: it left none, lost); None when
    every host exited 0. The first is the earliest non-zero exit its supervisor recorded
    (the others were then stopped because of it); failing that, a host whose supervisor
    itself ended badly (`codes`: what watching it saw)."""
    ended: list[tuple[float, str, int]] = []
    for host in spec.hosts:
        record = state.exit_record(host_paths(paths, spec, host))
        if record is not None and record[0] != 0:
            ended.append((record[1], host, record[0]))
    if ended:
        _, host, code = min(ended)
        return host, code
    for host in spec.hosts:
        if state.exit_record(host_paths(paths, spec, host)) is None:
            return host, codes.get(host)
    return None


def child(host: str, paths: JobPaths, process: asyncio.subprocess.Process) -> HostProcess:
    """A host whose supervisor is this process's child."""

    def signal_group(signum: signal.Signals) -> None:
        if process.returncode is None:
            os.killpg(process.pid, signum)

    return HostProcess(
        host=host,
        paths=paths,
        wait=process.wait,
        signal=signal_group,
        returncode=lambda: process.returncode,
    )


def adopted(host: str, paths: JobPaths, supervisor: ProcessRef) -> HostProcess:
    """A host whose supervisor an owner that died started: not our child, so its end is
    looked for, and its exit code is only what it wrote."""

    def signal_group(signum: signal.Signals) -> None:
        if is_alive(supervisor):  # not a later process given the same pid
            os.killpg(supervisor.pid, signum)

    return HostProcess(
        host=host,
        paths=paths,
        wait=lambda: gone(supervisor),
        signal=signal_group,
        returncode=lambda: None,
    )


def not_started(host: str, paths: JobPaths) -> HostProcess:
    """A host whose supervisor could not start: it ended at once, as a shell's 127."""

    async def ended() -> None:
        return None

    def nothing(_signum: signal.Signals) -> None:
        return None

    return HostProcess(host=host, paths=paths, wait=ended, signal=nothing, returncode=lambda: 127)


async def start_supervised(
    paths: JobPaths, spec: LocalJobRequest, host: str, rules: LocalRunRules
) -> asyncio.subprocess.Process | None:
    """Start `host`'s command under its supervisor, output to the host's logs.txt; None
    (said in the log) when the supervisor cannot start."""
    env, command = process_env_and_command(paths, spec, host)
    env.update(rules.s3_environment())  # after the job's own: the rule's endpoint wins
    with paths.logs.open("ab") as logs:
        try:
            return await asyncio.create_subprocess_exec(
                *supervised_command(paths, command, rules),
                stdin=asyncio.subprocess.DEVNULL,  # nothing of ours to outlive us
                stdout=logs,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=paths.root,
                # Its own session: a stop reaches the whole group, and the death of this
                # process does not.
                start_new_session=True,
            )
        except OSError as exc:
            logs.write(f"cannot start the supervisor of {command[0]!r}: {exc}\n".encode())
            return None
