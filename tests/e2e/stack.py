"""The whole lifecycle as separate processes: the SageMaker-API simulator and one
`stoker run <service>` process per service, on real Kafka and DynamoDB Local.

Every run gets its own topic prefix and table prefix, so runs sharing the servers never see
each other's events or jobs. Processes log to one file each (appended across restarts);
`Stack.tail` shows the end of a log when an assertion fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from aiobotocore.session import get_session

from stoker.devinfra import free_ports
from stoker.settings import Mode, Settings, StoreKind
from tests.support.waiting import wait_until_blocking

SERVICES = ("api", "intake", "launcher", "monitor", "retrier", "relay", "notifier")
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """Have the child SIGKILLed when the test process dies (util-linux `setpriv`), so an
    interrupted run leaves no service behind; `setpriv` execs, so the pid stays the child's."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


@dataclass(frozen=True)
class StackConfig:
    """What differs between runs: simulator faults, service settings, notify target."""

    faults: Mapping[str, Any]
    settings: Mapping[str, str] = field(default_factory=dict)
    webhook_url: str = ""


class Stack:
    """Start with `with Stack(...) as stack:`; every process is stopped on exit."""

    def __init__(
        self, workdir: Path, kafka_bootstrap: str, dynamodb_endpoint: str, config: StackConfig
    ) -> None:
        run = uuid.uuid4().hex[:10]
        self.run_id = run
        self.topic_prefix = f"e2e-{run}."
        self.table_prefix = f"e2e{run}"
        self.workdir = workdir
        self.api_port, self.sim_port = free_ports(2)
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.kafka_bootstrap = kafka_bootstrap
        self.dynamodb_endpoint = dynamodb_endpoint
        self._config = config
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}

    # -- environment ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of every service process (and of the test's own adapters)."""
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "stokerlocal",
            "AWS_SECRET_ACCESS_KEY": "stokerlocal",
            "AWS_DEFAULT_REGION": "us-east-1",
            "STOKER_MODE": "kafka",
            "STOKER_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "STOKER_DYNAMODB_ENDPOINT": self.dynamodb_endpoint,
            "STOKER_TOPIC_PREFIX": self.topic_prefix,
            "STOKER_DYNAMODB_TABLE_PREFIX": self.table_prefix,
            "STOKER_TRAINING_BACKEND": "sagemaker",
            "STOKER_SAGEMAKER_ENDPOINT": self.sim_url,
            "STOKER_API_PORT": str(self.api_port),
            "STOKER_DATA_DIR": str(self.workdir / "data"),
            "STOKER_LOG_LEVEL": "INFO",
            "STOKER_NOTIFY_DIGEST_WINDOW_S": "0",
            "STOKER_NOTIFY_SCAN_INTERVAL_S": "0.5",
            "STOKER_NOTIFY_INITIAL_BACKOFF_S": "0.1",
            "STOKER_NOTIFY_FALLBACK": "none",
        }
        if self._config.webhook_url:
            env["STOKER_NOTIFY_DEFAULT_TARGETS"] = json.dumps(
                [{"kind": "webhook", "url": self._config.webhook_url}]
            )
            # The receiver is on 127.0.0.1: the development allowance of the SSRF rules.
            env["STOKER_NOTIFY_ALLOW_LOOPBACK"] = "true"
        env.update(self._config.settings)
        return env

    def settings(self) -> Any:
        """Settings equal to the services' (for the test's own store and bus)."""
        env = self.env()
        store = env.get("STOKER_STORE")
        return Settings(
            mode=Mode.KAFKA,
            store=StoreKind(store) if store else None,
            data_dir=Path(env["STOKER_DATA_DIR"]),
            kafka_bootstrap=env["STOKER_KAFKA_BOOTSTRAP"],
            dynamodb_endpoint=env["STOKER_DYNAMODB_ENDPOINT"],
            topic_prefix=env["STOKER_TOPIC_PREFIX"],
            dynamodb_table_prefix=env["STOKER_DYNAMODB_TABLE_PREFIX"],
        )

    # -- processes --------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        with self._log(name).open("ab") as out:
            self._procs[name] = subprocess.Popen(
                with_parent_death_signal(argv),
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )

    def start_simulator(self) -> None:
        faults = self.workdir / "faults.json"
        faults.write_text(json.dumps(self._config.faults), encoding="utf-8")
        self._spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "stoker.simulator",
                "--port",
                str(self.sim_port),
                "--faults",
                str(faults),
            ],
        )
        wait_until_blocking(
            lambda: self._answers(f"{self.sim_url}/_sim/stats"), 30, what="the simulator"
        )

    def start(self, name: str, *services: str) -> None:
        """Start `stoker run <services...>` as the process `name` (the service of that name
        by default; several processes of one service get names of their own)."""
        self._spawn(name, [str(BIN / "stoker"), "run", *(services or (name,))])
        if name == "api":
            wait_until_blocking(
                lambda: self._answers(f"{self.api_url}/healthz"), 60, what="the API"
            )

    def start_up(self) -> None:
        """The simulator and `stoker up`: every service in one process, named "up"."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        self.start_simulator()
        self._spawn("up", [str(BIN / "stoker"), "up"])
        wait_until_blocking(lambda: self._answers(f"{self.api_url}/healthz"), 60, what="the API")

    def start_all(self, names: Iterable[str] = SERVICES) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        self.start_simulator()
        for name in names:
            self.start(name)

    def _answers(self, url: str) -> bool:
        self.check_alive()
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        """Fail with the log's tail if any process exited on its own."""
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise AssertionError(f"{name} exited with {code}:\n{self.tail(name)}")

    def kill(self, name: str) -> int:
        """SIGKILL one process and reap it; returns its exit code."""
        proc = self._procs[name]
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=STOP_TIMEOUT_S)

    def pid(self, name: str) -> int:
        return self._procs[name].pid

    def kill_for_good(self, name: str) -> int:
        """SIGKILL one process that is not coming back; `check_alive` leaves it out."""
        code = self.kill(name)
        del self._procs[name]
        return code

    def restart(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.start(name)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every process, then wait; returns the exit codes (SIGKILL after timeout)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name, proc in self._procs.items():
            try:
                codes[name] = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    def sim_stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.sim_url}/_sim/stats", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self._log(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "<no log>"

    def grep(self, name: str, needle: str) -> list[str]:
        path = self._log(name)
        if not path.exists():
            return []
        return [line for line in path.read_text(errors="replace").splitlines() if needle in line]

    def __enter__(self) -> Stack:
        return self

    def drop_tables(self) -> None:
        """Delete the run's DynamoDB tables: the shared DynamoDB Local keeps every table in
        memory, and each run would otherwise leave thousands of items behind."""
        if self.settings().store_kind is not StoreKind.DYNAMODB:
            return

        async def drop() -> None:
            session = get_session()
            async with session.create_client(
                "dynamodb",
                region_name="us-east-1",
                endpoint_url=self.dynamodb_endpoint,
                aws_access_key_id="stokerlocal",
                aws_secret_access_key="stokerlocal",
            ) as client:
                names = await client.list_tables(ExclusiveStartTableName=self.table_prefix)
                for name in names["TableNames"]:
                    if name.startswith(self.table_prefix + "-"):
                        await client.delete_table(TableName=name)

        asyncio.run(drop())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        self.drop_tables()
