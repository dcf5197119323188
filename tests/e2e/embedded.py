"""The embedded default (SQLite log and store, local training processes) started and waited
for, two ways: `stoker up` in a folder of its own (`EmbeddedStack`, for tests that kill it or
drive its CLI and API), or the lifecycle and pipelines services on this test's event loop
(`embedded_services`, for tests that read the stores as the services write them)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.app.pipelines import LifecycleStepJobs
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.core import topics
from stoker.core.naming import training_job_name
from stoker.core.pipelines.records import StoredExecution
from stoker.devinfra import free_ports
from stoker.lifecycle.jobs import JobService
from stoker.pipelines.engine import PipelineEngine
from stoker.settings import Settings
from tests.e2e.stack import BIN, STOP_TIMEOUT_S, with_parent_death_signal
from tests.support.waiting import poll_until, wait_until_blocking

READY_TIMEOUT_S = 60.0
"""How long `stoker up` may take to answer on its API port."""
ENTRYPOINTS_POLICY: Mapping[str, Any] = {"local": {"entrypoints": [["python", "-c"]]}}
"""Local training runs `python -c <command>` only: what the kill tests' jobs run."""
PIPELINE_SERVICES = ("launcher", "monitor", "retrier", "relay", "pipelines")
"""The services a pipeline execution needs, end to end."""


class EmbeddedStack:
    """`stoker up` in a data folder of its own; its output appended to `up.log`. `start`
    (or `start_blocking`) returns once the API answers; used as a context manager, the stack
    is stopped on exit."""

    def __init__(
        self,
        folder: Path,
        settings: Mapping[str, str] | None = None,
        *,
        policy: Mapping[str, Any] = ENTRYPOINTS_POLICY,
    ) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        policy_file = folder / "policy.json"
        policy_file.write_text(json.dumps(policy))
        (self.port,) = free_ports(1)
        self.env = {
            **os.environ,
            "STOKER_MODE": "embedded",
            "STOKER_DATA_DIR": str(self.data),
            "STOKER_API_PORT": str(self.port),
            "STOKER_POLICY_FILE": str(policy_file),
            "STOKER_LOG_LEVEL": "INFO",
            "STOKER_MONITOR_POLL_INTERVAL_S": "0.5",
            **(settings or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EmbeddedStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log(self) -> Path:
        return self.folder / "up.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start `stoker up` and wait until its API answers (AssertionError with the log's
        tail if it exits first)."""
        self._spawn()
        async with httpx.AsyncClient(timeout=1.0) as http:

            async def answers() -> bool:
                self.check_alive()
                try:
                    return (await http.get(f"{self.url}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await poll_until(answers, READY_TIMEOUT_S, 0.1, what="stoker up answering")

    def start_blocking(self) -> None:
        """`start` for synchronous code (fixtures): blocks the thread while it waits."""
        self._spawn()

        def answers() -> bool:
            self.check_alive()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until_blocking(answers, READY_TIMEOUT_S, what="stoker up answering")

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                with_parent_death_signal([str(BIN / "stoker"), "up"]),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )

    def check_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"stoker up exited with {code}:\n{tail}")

    def kill(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def training(self, job_id: str) -> Path:
        return self.data / "training" / training_job_name(job_id, 1).lower()


@dataclass(frozen=True)
class EmbeddedServices:
    """Services running on this event loop over `rt`, and the pipelines store they share."""

    rt: Runtime
    pipelines: SqlitePipelineStore
    task: asyncio.Task[None]

    def check_alive(self) -> None:
        """Raise what the services ended with (AssertionError if they ended cleanly)."""
        if self.task.done():
            self.task.result()
            raise AssertionError("the services ended before the test did")

    async def execution_end(self, execution_id: str, timeout_s: float = 180.0) -> StoredExecution:
        """The execution once it has ended (TimeoutError after `timeout_s`; the services'
        error, or AssertionError, if they end first)."""

        async def ended() -> bool:
            self.check_alive()
            return (await self.pipelines.get_execution(execution_id)).status.terminal

        await poll_until(ended, timeout_s, 0.2, what=f"the end of execution {execution_id}")
        return await self.pipelines.get_execution(execution_id)

    def engine(self) -> PipelineEngine:
        """A pipeline engine whose steps are jobs of this stack's lifecycle."""
        rt = self.rt
        jobs = LifecycleStepJobs(
            JobService(rt.transitioner(), rt.clock, rules=rt.submission_rules())
        )
        return PipelineEngine(self.pipelines, jobs, rt.bus, rt.clock)


@asynccontextmanager
async def embedded_services(
    settings: Settings,
    folder: Path,
    names: tuple[str, ...] = PIPELINE_SERVICES,
    **runtime: Any,
) -> AsyncIterator[EmbeddedServices]:
    """`names` running over a `Runtime(settings, **runtime)` with every topic made, and a
    pipelines store in `folder`; stopped, awaited and closed on exit."""
    async with Runtime(settings, **runtime) as rt:
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        stop = asyncio.Event()
        task = asyncio.create_task(run_services(rt, list(names), stop))
        pipelines = SqlitePipelineStore(folder / "pipelines.sqlite3")
        await pipelines.start()
        try:
            yield EmbeddedServices(rt, pipelines, task)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await pipelines.close()
