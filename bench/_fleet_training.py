"""Fleet benchmark, sharded training: Prophet models fitted per second by one training job
with 1 and with 2 instances on the local backend, and the scaling efficiency.

The same customers' files (the synthetic energy data, one `<customer>.csv` each) are read
through a `ShardedByS3Key` channel by `train_customers` in one job of `InstanceCount` 1, then
one of `InstanceCount` 2, turn about for a few rounds (ABBA order), each job writing into a
fresh checkpoint prefix so every model is fitted. A job's rate is its models over the
backend's start-to-end time (worker start-up included: that is what a user waits for). The
efficiency of a round is rate(2) / (2 x rate(1)); the figure is the median of the rounds,
so a change in the machine's load falls on both alike. Each job's CPU is counted too, from
`getrusage`: this process's own (the backend) and its reaped descendants' (the hosts'
supervisors, workers and the Stan processes the workers start).
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from stoker import training_scripts
from stoker.adapters.training.local import LocalProcessBackend
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus
from stoker.training_scripts import energy_data

SCRIPT = Path(training_scripts.__file__).parent / "train_customers.py"
POLL_S = 0.2


@dataclass(frozen=True)
class TrainingRun:
    workers: int
    models: int
    seconds: float
    worker_cpu_s: float
    """CPU time of the job's processes (supervisors, workers and the Stan processes they
    start): this process's reaped descendants."""
    backend_cpu_s: float
    """CPU time of this process: the backend running the job (and the bench's polling)."""

    @property
    def rate(self) -> float:
        return self.models / self.seconds


def training_request(name: str, data: Path, models: Path, output: Path, workers: int) -> Any:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/stoker-bench",
        "AlgorithmSpecification": {
            "TrainingImage": "stoker/train-customers:local",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": [sys.executable, str(SCRIPT)],
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": data.as_uri(),
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": workers,
            "VolumeSizeInGB": 1,
        },
        "CheckpointConfig": {"S3Uri": models.as_uri(), "LocalPath": "/opt/ml/checkpoints"},
        "OutputDataConfig": {"S3OutputPath": output.as_uri()},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


async def train_once(work: Path, data: Path, workers: int) -> TrainingRun:
    """One training job of `workers` instances over every customer in `data`."""
    name = f"bench-{workers}w-{uuid.uuid4().hex[:8]}"
    models = work / "models" / name
    backend = LocalProcessBackend(work / "training", max_concurrent=workers)
    await backend.start()
    own_before, reaped_before = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
    try:
        await backend.create_training_job(
            training_request(name, data, models, work / "output", workers)
        )
        described: TrainingJobDescription = await backend.describe_training_job(name)
        while not described.status.terminal:
            await asyncio.sleep(POLL_S)  # another process's progress: nothing to await
            described = await backend.describe_training_job(name)
    finally:
        await backend.close()
    own, reaped = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
    if described.status is not TrainingJobStatus.COMPLETED:
        raise RuntimeError(f"{name} ended {described.status}: {described.failure_reason}")
    start, end = described.training_start_time, described.training_end_time
    if start is None or end is None:
        raise RuntimeError(f"{name} completed without its start and end times")
    return TrainingRun(
        workers,
        len(list(models.glob("*.tar.gz"))),
        (end - start).total_seconds(),
        worker_cpu_s=reaped - reaped_before,
        backend_cpu_s=own - own_before,
    )


def cpu_s(who: int) -> float:
    """User and system CPU seconds of `who` (resource.RUSAGE_SELF or RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def training_scaling(
    console: Console, *, customers: int, rows: int, rounds: int, seed: int
) -> dict[str, Any]:
    """Rounds of a 1-instance and a 2-instance job; prints a table, returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-train-"))
    try:
        frame = energy_data.generate(
            customers=customers,
            rows_per_customer=rows,
            start=datetime(2021, 1, 1),
            end=datetime(2023, 1, 1),
            seed=seed,
        )
        data = work / "customers"
        energy_data.write_customer_files(frame, data)
        runs: list[TrainingRun] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(
                f"training rounds ({customers} models a job)", total=rounds * 2
            )
            for turn in range(rounds):
                for workers in (1, 2) if turn % 2 == 0 else (2, 1):
                    runs.append(asyncio.run(train_once(work, data, workers)))
                    progress.advance(task)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return scaling_table(console, runs, customers)


def scaling_table(console: Console, runs: list[TrainingRun], customers: int) -> dict[str, Any]:
    """The rounds one by one (the machine's speed drifts between jobs minutes apart: a round
    compares neighbours), then the medians."""
    one = [run for run in runs if run.workers == 1]
    two = [run for run in runs if run.workers == 2]
    for run in runs:
        if run.models != customers:
            raise RuntimeError(f"a {run.workers}-worker job wrote {run.models} of {customers}")
    efficiencies = [b.rate / (2 * a.rate) for a, b in zip(one, two, strict=True)]
    rounds = Table(title=f"sharded training: {customers} Prophet models a job, by round")
    for column in ("round", "1 worker models/s", "2 workers models/s", "efficiency"):
        rounds.add_column(column, justify="right")
    for number, (a, b, efficiency) in enumerate(zip(one, two, efficiencies, strict=True), 1):
        rounds.add_row(str(number), f"{a.rate:.2f}", f"{b.rate:.2f}", f"{efficiency:.2f}")
    console.print(rounds)
    table = Table(title=f"sharded training: {customers} Prophet models a job")
    for column in ("instances", "jobs", "median models/s", "min", "max", "median job s"):
        table.add_column(column, justify="right")
    for label, group in (("1", one), ("2", two)):
        rates = [run.rate for run in group]
        table.add_row(
            label,
            str(len(group)),
            f"{statistics.median(rates):.2f}",
            f"{min(rates):.2f}",
            f"{max(rates):.2f}",
            f"{statistics.median(run.seconds for run in group):.1f}",
        )
    table.add_row(
        "efficiency 2 vs 1, per round",
        str(len(efficiencies)),
        f"{statistics.median(efficiencies):.2f}",
        f"{min(efficiencies):.2f}",
        f"{max(efficiencies):.2f}",
        "",
    )
    console.print(table)
    contention = cpu_table(console, one, two)
    return {
        "training_models_per_job": customers,
        "training_1_worker_models_per_s": statistics.median(run.rate for run in one),
        "training_2_workers_models_per_s": statistics.median(run.rate for run in two),
        "training_scaling_efficiency_median": statistics.median(efficiencies),
        "training_scaling_efficiency_rounds": efficiencies,
        "training_worker_cpu_per_model_2_vs_1": contention,
    }


def cpu_table(console: Console, one: list[TrainingRun], two: list[TrainingRun]) -> float:
    """Where the CPU went, per job (medians): the workers' CPU per model, whose growth from
    one worker to two is the fits slowing each other down (and a second interpreter's
    start-up, about 1 s of CPU: 1 ms a model at 1,000 models), and the backend's CPU, which
    one worker leaves a core for and two workers share theirs with. Returns the growth."""
    table = Table(title="CPU per job (medians)")
    for column in ("instances", "workers' CPU ms per model", "backend CPU s per job"):
        table.add_column(column, justify="right")
    per_model = {}
    for label, group in (("1", one), ("2", two)):
        per_model[label] = statistics.median(1000 * run.worker_cpu_s / run.models for run in group)
        backend = statistics.median(run.backend_cpu_s for run in group)
        table.add_row(label, f"{per_model[label]:.1f}", f"{backend:.2f}")
    growth = per_model["2"] / per_model["1"]
    table.add_row("2 vs 1", f"{growth:.3f}", "")
    console.print(table)
    return growth
