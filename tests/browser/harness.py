"""What the browser tests and the dashboard bench share: Debian's Chromium driven by
Playwright, and `stoker up` (the embedded stack) with tokens of two teams.

Playwright's own browser downloads are never used: the browser is /usr/bin/chromium, which
CI installs with apt (`.ci/run`).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.embedded import EmbeddedStack
from tests.e2e.stack import BIN
from tests.support.auth import bearer

CHROMIUM = Path(os.environ.get("STOKER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"


def launch_options() -> dict[str, Any]:
    """`chromium.launch(**launch_options())`: Debian's browser, headless, no network of its own."""
    if not CHROMIUM.is_file():
        raise AssertionError(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        )
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "headless": True}


def screenshot_path(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"dashboard-{name}.png")


def waiting_training(release: Path) -> str:
    """A training command that runs until `release` exists (or it is stopped), without
    using the CPU the stack needs."""
    return (
        "import pathlib, time\n"
        f"while not pathlib.Path({str(release)!r}).exists():\n"
        "    time.sleep(0.05)\n"
    )


def job_spec(
    job_id: str, command: str, output: Path, instance_type: str = "ml.m5.large"
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "training": {
            "RoleArn": "arn:aws:iam::000000000000:role/stoker-dashboard",
            "AlgorithmSpecification": {
                "TrainingImage": "local",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ["python", "-c"],
                "ContainerArguments": [command],
            },
            "OutputDataConfig": {"S3OutputPath": output.as_uri()},
            "ResourceConfig": {
                "InstanceType": instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
    }


@dataclass
class DashboardStack:
    """`stoker up` with a token of team `search` (ana) and one of team `ads` (bo); `env`
    adds settings (STOKER_*) to the stack's."""

    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    stack: EmbeddedStack = field(init=False)
    search_token: str = ""
    ads_token: str = ""

    def __post_init__(self) -> None:
        self.stack = EmbeddedStack(self.folder, {"STOKER_LOG_LEVEL": "WARNING", **self.env})

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def dashboard(self) -> str:
        return f"{self.url}/dashboard/"

    def start(self) -> None:
        self.search_token = self._token("ana", "search")
        self.ads_token = self._token("bo", "ads")
        self.stack.start_blocking()

    def _token(self, owner: str, team: str) -> str:
        """A submitter token made as an admin makes one: `stoker auth token create`."""
        made = subprocess.run(
            [
                str(BIN / "stoker"),
                "auth",
                "token",
                "create",
                "--owner",
                owner,
                "--team",
                team,
                "--role",
                "submitter",
            ],
            env=self.stack.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return made.stdout.strip()

    @property
    def admin_token(self) -> str:
        """The admin token `stoker up` made at its first start (the `default` team's)."""
        return (self.stack.data / "api-token").read_text().strip()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(token), timeout=10)

    def submit(self, token: str, spec: dict[str, Any]) -> dict[str, Any]:
        with self.client(token) as client:
            response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()["job"]
        return job

    def stop(self) -> None:
        self.stack.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
