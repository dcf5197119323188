"""`stoker up` on the embedded default in a folder of its own, for tests that need the
whole stack in one process (SQLite log and store, local training processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from stoker.core.naming import training_job_name
from stoker.devinfra import free_ports
from tests.e2e.stack import BIN, STOP_TIMEOUT_S, with_parent_death_signal


class EmbeddedStack:
    """`stoker up` in a data folder of its own; its output appended to `up.log`."""

    def __init__(self, folder: Path, settings: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True)
        policy = folder / "policy.json"
        policy.write_text(json.dumps({"local": {"entrypoints": [["python", "-c"]]}}))
        (self.port,) = free_ports(1)
        self.env = {
            **os.environ,
            "STOKER_MODE": "embedded",
            "STOKER_DATA_DIR": str(self.data),
            "STOKER_API_PORT": str(self.port),
            "STOKER_POLICY_FILE": str(policy),
            "STOKER_LOG_LEVEL": "INFO",
            "STOKER_MONITOR_POLL_INTERVAL_S": "0.5",
            **(settings or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / "up.log"

    def start(self) -> None:
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
