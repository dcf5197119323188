"""Pipelines benchmark, on the embedded default (SQLite bus and stores, local processes).

(a) hand-off: a chain of N training steps (the shipped script, one epoch each); for every
    step after the first, the time from its predecessor's job reaching Completed (in the
    job's history) to its own job being created: what the pipelines service adds between
    two steps. p50 / p99; goal p99 under 200 ms (SageMaker Pipelines takes minutes).
(b) fan-out/fan-in: a 100-step pipeline (Root -> 98 steps -> Join) against the same 100 jobs
    submitted directly, each run in a fresh stack of its own in this process, the same
    local-process slots; wall time of each and their ratio (goal: at most 1.2x).

    .venv/bin/python bench/pipelines.py
    .venv/bin/python bench/pipelines.py --chain 30 --fan 100 --slots 4

Figures, with the command, date and machine state: docs/benchmarks-pipelines.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore
from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.demo import demo_settings
from stoker.app.pipelines import LifecycleStepJobs
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.core import topics
from stoker.core.job import JobStatus
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.logs import configure_logging
from stoker.pipelines.engine import PipelineEngine
from stoker.training_scripts import train_linear

TARGET_P99_MS = 200.0
TARGET_RATIO = 1.2
SERVICES = ["launcher", "monitor", "retrier", "relay", "pipelines"]
console = Console(width=120)


def training(output: Path) -> dict[str, Any]:
    return {
        "RoleArn": "arn:aws:iam::000000000000:role/stoker-bench",
        "AlgorithmSpecification": {
            "TrainingImage": "local",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": [sys.executable, train_linear.__file__],
        },
        "HyperParameters": {"epochs": "1"},
        "OutputDataConfig": {"S3OutputPath": output.as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def step(name: str, output: Path, depends_on: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"Name": name, "Type": "Training", "Arguments": training(output)}
    if depends_on:
        body["DependsOn"] = depends_on
    return body


def chain(n: int, output: Path) -> dict[str, Any]:
    names = [f"S{k:03d}" for k in range(n)]
    steps = [step(name, output, names[k - 1 : k]) for k, name in enumerate(names)]
    return {"Version": "2020-12-01", "Parameters": [], "Steps": steps}


def fan(n: int, output: Path) -> dict[str, Any]:
    middle = [f"F{k:03d}" for k in range(n - 2)]
    steps = [step("Root", output, [])]
    steps += [step(name, output, ["Root"]) for name in middle]
    steps.append(step("Join", output, middle))
    return {"Version": "2020-12-01", "Parameters": [], "Steps": steps}


@dataclass
class Stack:
    rt: Runtime
    store: SqlitePipelineStore
    engine: PipelineEngine
    jobs: JobService


async def with_stack(data: Path, slots: int, work: Callable[[Stack], Awaitable[Any]]) -> Any:
    """A fresh embedded stack in `data` for the length of `work`."""
    settings = demo_settings(data)
    backend = LocalProcessBackend(data / "training", max_concurrent=slots)
    async with Runtime(settings, backend=backend) as rt:
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(rt, SERVICES, stop))
        store = SqlitePipelineStore(data / "pipelines.sqlite3")
        await store.start()
        jobs = JobService(rt.transitioner(), rt.clock, rules=rt.submission_rules())
        engine = PipelineEngine(store, LifecycleStepJobs(jobs), rt.bus, rt.clock)
        try:
            return await work(Stack(rt, store, engine, jobs))
        finally:
            stop.set()
            await asyncio.gather(services, return_exceptions=True)
            await store.close()


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout_s: float, progress: Callable[[], Awaitable[None]]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        await progress()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout_s} s")
        await asyncio.sleep(0.1)


async def completed_at(stack: Stack, job_id: str) -> datetime:
    history = await stack.rt.store.history(job_id)
    return next(t.at for t in history if t.to_status is JobStatus.COMPLETED)


async def run_pipeline(
    stack: Stack, doc: dict[str, Any], label: str, timeout_s: float
) -> tuple[str, float]:
    await stack.store.put_pipeline(
        label,
        team="default",
        definition=orjson.dumps(doc).decode(),
        description=None,
        now=stack.rt.clock.now(),
    )
    total = len(doc["Steps"])
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(label, total=total)
        started = time.monotonic()
        execution = await stack.engine.start_execution(
            label, {}, team="default", owner="bench", execution_id=f"{label}1"
        )

        async def done() -> bool:
            return (await stack.store.get_execution(execution.execution_id)).status.terminal

        async def show() -> None:
            state = (await stack.store.get_execution(execution.execution_id)).state
            bar.update(
                task, completed=sum(run.status == "Succeeded" for run in state.steps.values())
            )

        await wait_for(done, timeout_s, show)
        await show()
        wall = time.monotonic() - started
    final = await stack.store.get_execution(execution.execution_id)
    if final.status != "Succeeded":
        raise RuntimeError(f"{label} ended {final.status}: {final.state.failure_reason}")
    return execution.execution_id, wall


async def handoffs(data: Path, n: int, slots: int, timeout_s: float) -> list[float]:
    async def work(stack: Stack) -> list[float]:
        execution_id, _ = await run_pipeline(stack, chain(n, data / "out"), "chain", timeout_s)
        gaps = []
        for k in range(1, n):
            before = await completed_at(stack, f"{execution_id}.S{k - 1:03d}.1")
            after = (await stack.rt.store.get(f"{execution_id}.S{k:03d}.1")).created_at
            gaps.append((after - before).total_seconds() * 1000)
        return gaps

    result: list[float] = await with_stack(data, slots, work)
    return result


async def fan_wall(data: Path, n: int, slots: int, timeout_s: float) -> float:
    async def work(stack: Stack) -> float:
        _, wall = await run_pipeline(stack, fan(n, data / "out"), "fan", timeout_s)
        return wall

    result: float = await with_stack(data, slots, work)
    return result


async def direct_wall(data: Path, n: int, slots: int, timeout_s: float) -> float:
    async def work(stack: Stack) -> float:
        ids = [f"direct-{k:03d}" for k in range(n)]
        with Progress(
            TextColumn("direct"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("direct", total=n)
            started = time.monotonic()
            for job_id in ids:
                spec = parse_spec({"job_id": job_id, "training": training(data / "out")})
                await stack.jobs.submit(spec, owner="bench")

            async def count() -> int:
                jobs = await stack.rt.store.get_many(ids)
                return sum(job.status is JobStatus.COMPLETED for job in jobs.values())

            async def done() -> bool:
                return await count() == n

            async def show() -> None:
                bar.update(task, completed=await count())

            await wait_for(done, timeout_s, show)
            await show()
            return time.monotonic() - started

    result: float = await with_stack(data, slots, work)
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    configure_logging("ERROR", json=False)
    with tempfile.TemporaryDirectory(prefix="stoker-bench-pipelines-") as tmp:
        root = Path(tmp)
        gaps = await handoffs(root / "chain", args.chain, args.slots, args.timeout_s)
        direct = await direct_wall(root / "direct", args.fan, args.slots, args.timeout_s)
        fanned = await fan_wall(root / "fan", args.fan, args.slots, args.timeout_s)
    p50, p99 = percentile(gaps, 0.5), percentile(gaps, 0.99)
    table = Table(title="pipelines on the embedded default")
    for column in ("measure", "value", "goal", "met"):
        table.add_column(column)
    table.add_row(f"hand-off p50 ({len(gaps)} hand-offs)", f"{p50:.1f} ms", "", "")
    table.add_row(
        "hand-off p99", f"{p99:.1f} ms", f"< {TARGET_P99_MS:.0f} ms", str(p99 < TARGET_P99_MS)
    )
    table.add_row("hand-off mean", f"{statistics.fmean(gaps):.1f} ms", "", "")
    table.add_row(f"{args.fan} jobs submitted directly", f"{direct:.2f} s", "", "")
    table.add_row(f"{args.fan}-step fan-out/fan-in pipeline", f"{fanned:.2f} s", "", "")
    ratio = fanned / direct
    table.add_row(
        "pipeline / direct", f"{ratio:.2f}x", f"<= {TARGET_RATIO}x", str(ratio <= TARGET_RATIO)
    )
    console.print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chain", type=int, default=20, help="steps in the hand-off chain")
    parser.add_argument("--fan", type=int, default=100, help="steps in the fan-out/fan-in pipeline")
    parser.add_argument("--slots", type=int, default=4, help="local training processes at once")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
