"""The demo: the whole embedded stack in one process, 200 real training jobs, injected faults.

Jobs run the logistic-regression script shipped with stoker as local processes with the
SageMaker container layout. Faults are injected three ways: capacity shortages (a share of
attempts report CapacityError and are retried, on the next instance type), transient
algorithm errors (the script fails once after writing a checkpoint; a rule marks the message
as retriable and the retry resumes from the checkpoint), and permanent algorithm errors
(terminal at once). Submission goes through the real HTTP API with the SDK: each job with
a submitter token of its owner (team `demo`), made with the data folder's admin token
(`stoker.app.local_token`, printed like `stoker up`'s).
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from stoker.adapters.training.capacity_faults import CapacityFaults
from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.local_token import LocalToken, ensure_local_token
from stoker.app.runtime import Runtime
from stoker.app.services import SERVICES, Service, run_services
from stoker.auth.tokens import TokenService
from stoker.client import AsyncClient
from stoker.core.auth import Role
from stoker.core.job import JobStatus
from stoker.ports.store import all_jobs
from stoker.settings import Settings
from stoker.training_scripts import train_linear

OWNERS = ("ana", "bo", "chen", "dara")
DEMO_TEAM = "demo"
PERMANENT_ERROR = "bad hyperparameter: learning_rate must be positive"
TRANSIENT_ERROR = "transient: lost connection to the parameter store"


@dataclass(frozen=True)
class DemoPlan:
    jobs: int = 200
    capacity_fault_rate: float = 0.10
    transient_error_rate: float = 0.10
    permanent_error_rate: float = 0.05
    seed: int = 7
    max_concurrent: int = 4
    timeout_s: float = 280.0


@dataclass
class DemoResult:
    statuses: Counter[str] = field(default_factory=Counter)
    retries_by_reason: dict[str, int] = field(default_factory=dict)
    failed_after_retries: int = 0
    notifications: int = 0
    """Messages sent (a digest counts once)."""
    jobs_notified: int = 0
    """Distinct jobs those messages covered."""
    create_calls: int = 0
    attempts: int = 0
    elapsed_s: float = 0.0
    finished: bool = False


def demo_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        retry_initial_delay_s=0.3,
        retry_multiplier=2,
        retry_max_delay_s=2,
        retry_jitter=0.2,
        retry_max_attempts=3,
        monitor_poll_interval_s=0.25,
        # Local processes have no API throttle; the token bucket matters against SageMaker.
        monitor_api_rate_per_s=1000,
        failure_rules=[{"reason_pattern": "transient", "action": "retry"}],
        api_port=_free_port(),
        log_level="ERROR",
    )


def job_specs(plan: DemoPlan) -> list[dict[str, Any]]:
    """The submissions: owners, priorities and fault choices drawn from a seeded RNG."""
    rng = random.Random(plan.seed)
    specs = []
    for n in range(plan.jobs):
        hyper: dict[str, str] = {"epochs": "30", "seed": str(n)}
        draw = rng.random()
        if draw < plan.permanent_error_rate:
            hyper["fail_with"] = PERMANENT_ERROR
        elif draw < plan.permanent_error_rate + plan.transient_error_rate:
            hyper["fail_once_with"] = TRANSIENT_ERROR
        specs.append(
            {
                "job_id": f"demo-{n:04d}",
                "owner": rng.choice(OWNERS),
                "priority": rng.choice([0, 0, 0, 10]),
                "instance_type_fallbacks": ["ml.m5.2xlarge", "ml.c5.2xlarge"],
                "training": {
                    "AlgorithmSpecification": {
                        "TrainingImage": "stoker/train-linear:local",
                        "TrainingInputMode": "File",
                        "ContainerEntrypoint": [sys.executable, train_linear.__file__],
                    },
                    "HyperParameters": hyper,
                    "ResourceConfig": {
                        "InstanceType": "ml.m5.large",
                        "InstanceCount": 1,
                        "VolumeSizeInGB": 1,
                    },
                    "CheckpointConfig": {"S3Uri": f"file://{{data}}/checkpoints/demo-{n:04d}"},
                    "RoleArn": "arn:aws:iam::000000000000:role/stoker-demo",
                    "OutputDataConfig": {"S3OutputPath": "file://{data}/output"},
                    "StoppingCondition": {"MaxRuntimeInSeconds": 120},
                },
            }
        )
    return specs


def _notifier(data_dir: Path) -> Service:
    """The notifier with the file channel: one JSON line per message, digests after 5 s."""
    from stoker.app.notifier import serve
    from stoker.notifier.config import NotifySettings

    notify = NotifySettings(
        fallback="file", file_path=data_dir / "notifications.jsonl", digest_window_s=5
    )

    async def run(rt: Runtime, stop: asyncio.Event) -> None:
        await serve(rt.settings, stop, notify=notify, bus=rt.bus, store=rt.store, clock=rt.clock)

    return run


def read_notifications(path: Path) -> tuple[int, set[str]]:
    """Messages in the notification file and the distinct job ids they cover."""
    if not path.exists():
        return 0, set()
    messages, jobs = 0, set[str]()
    for line in path.read_bytes().splitlines():
        messages += 1
        jobs.update(str(job["job_id"]) for job in orjson.loads(line)["jobs"])
    return messages, jobs


async def run_demo(
    data_dir: Path,
    plan: DemoPlan,
    on_progress: Callable[[int, int], None],
    on_token: Callable[[LocalToken], None] = lambda _token: None,
) -> DemoResult:
    settings = demo_settings(data_dir)
    notifications = data_dir / "notifications.jsonl"
    backend = CapacityFaults(
        LocalProcessBackend(data_dir / "training", max_concurrent=plan.max_concurrent),
        rate=plan.capacity_fault_rate,
        seed=plan.seed,
    )
    services = {**SERVICES, "notifier": _notifier(data_dir)}
    names = ["api", "launcher", "monitor", "retrier", "relay", "notifier"]
    result = DemoResult()
    started = time.monotonic()
    async with Runtime(settings, backend=backend) as rt:
        stop = asyncio.Event()
        stack = asyncio.create_task(run_services(rt, names, stop, services=services))
        url = f"http://{settings.api_host}:{settings.api_port}"
        token = await ensure_local_token(rt.tokens, rt.clock, data_dir)
        on_token(token)
        async with AsyncClient(url, token=token.token) as admin:
            await _wait_for_api(admin, stack)
        clients = await _submitters(rt, url)
        try:
            for spec in job_specs(plan):
                await clients[spec["owner"]].submit(_with_data_dir(spec, data_dir))
        finally:
            for client in clients.values():
                await client.close()
        deadline = started + plan.timeout_s
        while time.monotonic() < deadline and not stack.done():
            done = await _count_terminal(rt)
            on_progress(done, plan.jobs)
            if done >= plan.jobs:
                result.finished = True
                break
            await asyncio.sleep(0.5)
        # Digests close after their window: wait (bounded) until every job was notified.
        notify_deadline = time.monotonic() + 15
        while result.finished and time.monotonic() < notify_deadline:
            if len(read_notifications(notifications)[1]) >= plan.jobs:
                break
            await asyncio.sleep(0.25)
        stop.set()
        await stack
        await _summarize(rt, backend, result)
    result.notifications, jobs = read_notifications(notifications)
    result.jobs_notified = len(jobs)
    result.elapsed_s = time.monotonic() - started
    return result


async def _submitters(rt: Runtime, url: str) -> dict[str, AsyncClient]:
    """An SDK client per owner, each with a submitter token of its own."""
    tokens = TokenService(rt.tokens, rt.clock)
    clients = {}
    for owner in OWNERS:
        issued = await tokens.create(
            owner, DEMO_TEAM, Role.SUBMITTER, expires_in=timedelta(days=1), description="demo"
        )
        clients[owner] = AsyncClient(url, token=issued.token)
    return clients


async def _wait_for_api(client: AsyncClient, stack: asyncio.Task[None]) -> None:
    for _ in range(200):
        if stack.done():
            stack.result()
        try:
            await client.list_jobs(limit=1)
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise RuntimeError("the API did not come up within 10 s")


async def _count_terminal(rt: Runtime) -> int:
    total = 0
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED):
        total += sum([1 async for _ in all_jobs(rt.store, status)])
    return total


async def _summarize(rt: Runtime, backend: CapacityFaults, result: DemoResult) -> None:
    async for job in all_jobs(rt.store):
        result.statuses[job.status.value] += 1
        result.attempts += job.attempt
        if job.status is JobStatus.FAILED and job.attempt > 1:
            result.failed_after_retries += 1
    now = rt.clock.now()
    trends = await rt.store.trends(now - timedelta(days=1), now + timedelta(days=1))
    result.retries_by_reason = dict(trends.retries_per_reason)
    result.create_calls = backend.calls["CreateTrainingJob"]


def _with_data_dir(spec: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    training = spec["training"]
    training["CheckpointConfig"]["S3Uri"] = training["CheckpointConfig"]["S3Uri"].format(
        data=data_dir
    )
    training["OutputDataConfig"]["S3OutputPath"] = training["OutputDataConfig"][
        "S3OutputPath"
    ].format(data=data_dir)
    return spec


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
