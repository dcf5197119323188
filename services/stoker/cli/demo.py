"""`stoker demo`: the main job end to end on the embedded default."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoker.app.demo import DemoPlan, DemoResult, demo_settings, run_demo
from stoker.app.local_token import describe
from stoker.app.process import run_service_process
from stoker.logs import configure_logging

console = Console()


def demo(
    jobs: Annotated[int, typer.Option(min=1, max=5000, help="how many jobs to submit")] = 200,
    data_dir: Annotated[
        Path | None, typer.Option(help="keep the run's files here (default: a new temp dir)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for owners and injected faults")] = 7,
) -> None:
    """Start the embedded stack, submit JOBS real training jobs with injected capacity and
    algorithm faults, follow them to the end, and print a summary."""
    configure_logging("ERROR", json=False)
    folder = data_dir or Path(tempfile.mkdtemp(prefix="stoker-demo-"))
    plan = DemoPlan(jobs=jobs, seed=seed)
    console.print(f"stoker demo: {jobs} jobs, embedded stack in [bold]{folder}[/bold]")
    with Progress(
        TextColumn("[bold]jobs finished"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("jobs", total=jobs)
        result = run_service_process(
            run_demo(
                folder,
                plan,
                lambda done, _total: progress.update(task, completed=done),
                on_token=lambda token: console.print("\n".join(describe(token))),
            ),
            demo_settings(folder),
        )
    console.print(summary_table(result, jobs))
    if not result.finished:
        console.print("[red]not every job reached a terminal state in time[/red]")
        raise typer.Exit(1)


def summary_table(result: DemoResult, jobs: int) -> Table:
    table = Table(title="stoker demo summary", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("jobs submitted", str(jobs))
    for status in ("Completed", "Failed", "Stopped"):
        table.add_row(f"ended {status}", str(result.statuses.get(status, 0)))
    table.add_row("  of which failed after retries", str(result.failed_after_retries))
    for reason, count in sorted(result.retries_by_reason.items()):
        table.add_row(f"retries: {reason}", str(count))
    table.add_row("training attempts", str(result.attempts))
    table.add_row("CreateTrainingJob calls", str(result.create_calls))
    table.add_row("notifications sent (digests count once)", str(result.notifications))
    table.add_row("  jobs they covered", str(result.jobs_notified))
    table.add_row("wall time (s)", f"{result.elapsed_s:.1f}")
    return table
