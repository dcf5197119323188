"""The local backend's listing over many finished jobs, against reading every state file.

A work folder gets `--jobs` finished training jobs (written by `local_state.save`, as the
backend writes them); a fresh backend starts on it, then lists the jobs changed since now
(none: what the monitor asks at every sweep) `--rounds` times. The baseline, turn about in
the same run: loading every job's state file (`local_state.load`), which is what a listing
did before it kept finished jobs. Figures: medians and the ratio.

    .venv/bin/python bench/local_listing.py --jobs 5000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stoker.adapters.processes import ProcessRef
from stoker.adapters.training import local_state
from stoker.adapters.training.container import JobPaths
from stoker.adapters.training.local import LocalProcessBackend
from stoker.adapters.training.local_state import LocalJob
from stoker.ports.training import TrainingJobStatus


def write_finished_jobs(work: Path, count: int) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(count):
        paths = JobPaths(work / f"job-{n}")
        paths.root.mkdir(parents=True)
        local_state.save(
            LocalJob(
                name=paths.root.name,
                arn=f"arn:aws:sagemaker:local:000000000000:training-job/{paths.root.name}",
                paths=paths,
                instance_type="ml.m5.large",
                status=TrainingJobStatus.COMPLETED,
                secondary="Completed",
                creation_time=at,
                last_modified=at,
                owner=ProcessRef(1, 1.0),
                start_time=at,
                end_time=at,
            )
        )


def read_every_state(work: Path) -> int:
    return sum(local_state.load(JobPaths(folder)) is not None for folder in work.iterdir())


async def measure(work: Path, rounds: int) -> tuple[list[float], list[float]]:
    backend = LocalProcessBackend(work)
    await backend.start()
    listings: list[float] = []
    baseline: list[float] = []
    try:
        since = datetime.now(UTC)
        for _ in range(rounds):
            started = time.perf_counter()
            await backend.list_training_jobs(last_modified_time_after=since)
            listings.append(time.perf_counter() - started)
            started = time.perf_counter()
            read_every_state(work)
            baseline.append(time.perf_counter() - started)
    finally:
        await backend.close()
    return listings, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="local-listing-"))
    try:
        write_finished_jobs(work, args.jobs)
        listings, baseline = asyncio.run(measure(work, args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"listing {args.jobs} finished local jobs ({args.rounds} rounds)")
    for column in ("what", "median ms", "min ms", "max ms"):
        table.add_column(column, justify="right")
    for label, times in (("listing", listings), ("reading every state file", baseline)):
        ms = [1000 * t for t in times]
        table.add_row(label, f"{statistics.median(ms):.1f}", f"{min(ms):.1f}", f"{max(ms):.1f}")
    ratio = statistics.median(baseline) / statistics.median(listings)
    table.add_row("baseline / listing", f"{ratio:.1f}x", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
