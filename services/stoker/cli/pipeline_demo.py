"""`stoker pipelines demo`: the seed's sentiment pipeline end to end on the embedded default,
with a live view of its steps and a table of each step's state, duration and outputs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoker.app.pipeline_demo import (
    DEFINITION_FILE,
    EXAMPLE_DIR,
    PIPELINE,
    PipelineDemoPlan,
    PipelineDemoResult,
    pipeline_demo_settings,
    run_pipeline_demo,
)
from stoker.app.process import run_service_process
from stoker.core.pipelines.state import ExecutionState, StepStatus
from stoker.logs import configure_logging

console = Console()

_ENDED = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.STOPPED,
        StepStatus.SKIPPED,
        StepStatus.NOT_STARTED,
    }
)


class StepsView:
    """One line per step: a spinner, its state and the time since it started."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def update(self, state: ExecutionState) -> None:
        for name, run in state.steps.items():
            task = self._tasks.get(name)
            if task is None:
                task = self._progress.add_task(name, total=1, start=False, state="")
                self._tasks[name] = task
            if run.status is not StepStatus.PENDING:
                self._progress.start_task(task)
            attempt = f" (attempt {run.attempt})" if run.attempt > 1 else ""
            done = run.status in _ENDED
            self._progress.update(task, state=f"{run.status}{attempt}", completed=1 if done else 0)


def demo(  # noqa: PLR0917 (typer passes options positionally)
    data_dir: Annotated[
        Path | None, typer.Option(help="keep the run's files here (default: a new temp dir)")
    ] = None,
    rows: Annotated[int, typer.Option(min=20, help="preprocess: training rows")] = 500,
    epochs: Annotated[int, typer.Option(min=1, help="train: epochs of the head")] = 200,
    min_accuracy: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="train: fail below this test accuracy")
    ] = 0.75,
    batch_rows: Annotated[int, typer.Option(min=1, help="batch inference: rows scored")] = 300,
    timeout_s: Annotated[
        float, typer.Option(min=1.0, help="stop the execution after this long")
    ] = 600.0,
    example: Annotated[
        Path, typer.Option(help="the example folder: its notebooks and pipeline.json")
    ] = EXAMPLE_DIR,
) -> None:
    """Run examples/sentiment-pipeline (preprocess -> train -> batch inference notebooks) as
    a pipeline on the embedded default, then print each step's state, duration and outputs.
    Needs the `notebooks` and `inference` extras (papermill, torch, the packaged MiniLM)."""
    configure_logging("ERROR", json=False)
    if not (example / DEFINITION_FILE).is_file():
        console.print(
            f"[red]--example: {example} holds no {DEFINITION_FILE} (the demo runs from a "
            "source checkout of stoker, or give the folder of examples/sentiment-pipeline)[/red]"
        )
        raise typer.Exit(2)
    folder = (data_dir or Path(tempfile.mkdtemp(prefix="stoker-pipeline-demo-"))).resolve()
    plan = PipelineDemoPlan(
        rows=rows,
        epochs=epochs,
        min_accuracy=min_accuracy,
        batch_rows=batch_rows,
        timeout_s=timeout_s,
    )
    console.print(
        f"stoker pipelines demo: pipeline [bold]{PIPELINE}[/bold], embedded stack in "
        f"[bold]{folder}[/bold]"
    )
    with Progress(
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        view = StepsView(progress)
        result = run_service_process(
            run_pipeline_demo(folder, plan, view.update, example=example),
            pipeline_demo_settings(folder),
        )
    console.print(steps_table(result))
    console.print(f"outputs: {result.output_dir}")
    if result.status != "Succeeded":
        console.print(f"[red]execution {result.status}: {result.failure_reason}[/red]")
        raise typer.Exit(1)


def steps_table(result: PipelineDemoResult) -> Table:
    table = Table(
        title=f"execution {result.execution_id}: {result.status} in {result.elapsed_s:.1f} s"
    )
    table.add_column("step")
    table.add_column("state")
    table.add_column("duration (s)", justify="right")
    table.add_column("outputs")
    for step in result.steps:
        duration = "" if step.duration_s is None else f"{step.duration_s:.1f}"
        outputs = "\n".join(step.outputs)
        if step.failure_reason:
            outputs = f"{outputs}\n[red]{step.failure_reason}[/red]".strip()
        table.add_row(step.name, step.status, duration, outputs)
    return table
