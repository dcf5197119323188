"""`stoker fleet demo`: per-customer models end to end on the embedded default (generate and
split, sharded training, the multi-model endpoint, Zipf traffic through boto3), with a
progress bar per phase and a summary table."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from stoker.app.fleet_demo import (
    ENDPOINT_NAME,
    FleetDemoPlan,
    FleetDemoResult,
    Phase,
    fleet_demo_settings,
    run_fleet_demo,
)
from stoker.app.fleet_traffic import percentile
from stoker.app.process import run_service_process
from stoker.core.errors import StokerError
from stoker.logs import configure_logging

app = typer.Typer(help="Thousands of per-customer models: the seed's whole flow.")
console = Console()
FAILURES_SHOWN = 10


class PhasesView:
    """One bar per phase, added when the phase starts."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[Phase, TaskID] = {}

    def update(self, phase: Phase, done: int, total: int | None) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._progress.add_task(str(phase), total=total)
            self._tasks[phase] = task
        self._progress.update(task, completed=done, total=total)


@app.command("demo")
def demo(  # noqa: PLR0917 (typer passes options positionally)
    customers: Annotated[int, typer.Option(min=1, help="customers: one model each")] = 1000,
    workers: Annotated[
        int, typer.Option(min=1, help="training instances (worker processes), sharded by key")
    ] = 2,
    rows: Annotated[int, typer.Option(min=10, help="rows of data per customer")] = 300,
    requests: Annotated[
        int, typer.Option(min=0, help="Zipf-distributed requests after one per model")
    ] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 4,
    zipf_s: Annotated[float, typer.Option(min=0.01, help="the Zipf exponent")] = 1.1,
    memory_mb: Annotated[float, typer.Option(min=0.01, help="endpoint memory tier (MiB)")] = 512,
    disk_mb: Annotated[float, typer.Option(min=0.01, help="endpoint disk tier (MiB)")] = 4096,
    serve_workers: Annotated[int, typer.Option(min=1, help="endpoint prediction processes")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the data and the traffic")] = 0,
    timeout_s: Annotated[float, typer.Option(min=1.0, help="stop the jobs after this long")] = 3600,
    data_dir: Annotated[
        Path | None, typer.Option(help="keep the run's files here (default: a new temp dir)")
    ] = None,
    input_dir: Annotated[
        Path | None,
        typer.Option(
            "--input",
            exists=True,
            file_okay=False,
            help="split the CSV files here (customer_id,timestamp,consumption) instead of "
            "generating data",
        ),
    ] = None,
) -> None:
    """Generate and split the energy data (a processing job), train one Prophet model per
    customer in one sharded training job, serve them all from one multi-model endpoint and
    query every model through boto3's sagemaker-runtime client. Needs the `fleet` extra."""
    configure_logging("ERROR", json=False)
    folder = (data_dir or Path(tempfile.mkdtemp(prefix="stoker-fleet-demo-"))).resolve()
    plan = FleetDemoPlan(
        customers=customers,
        workers=workers,
        rows_per_customer=rows,
        requests=requests,
        concurrency=concurrency,
        zipf_s=zipf_s,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        serve_workers=serve_workers,
        seed=seed,
        timeout_s=timeout_s,
        input_dir=input_dir,
    )
    data = f"the data set in {input_dir}" if input_dir else f"{customers} customers"
    console.print(
        f"stoker fleet demo: {data}, {workers} training workers, "
        f"embedded stack in [bold]{folder}[/bold]"
    )

    async def endpoint_up(url: str, _token: str) -> None:
        # The token stays in the process: it is printed nowhere (secrets never in output).
        console.print(f"endpoint [bold]{ENDPOINT_NAME}[/bold] at {url} (bearer token required)")

    with Progress(
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        view = PhasesView(progress)
        try:
            result = run_service_process(
                run_fleet_demo(folder, plan, view.update, on_endpoint=endpoint_up),
                fleet_demo_settings(folder),
            )
        except StokerError as exc:  # a job refused at submission, a service that failed
            console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
            raise typer.Exit(1) from exc
    console.print(summary_table(result, plan))
    for bad in result.bad_rows[:FAILURES_SHOWN]:
        console.print(
            f"[yellow]row skipped: {bad.get('file')} line {bad.get('line')}: "
            f"{bad.get('reason')}[/yellow]"
        )
    for customer, reason in list(result.failed_models.items())[:FAILURES_SHOWN]:
        console.print(f"[yellow]model {customer} failed: {reason}[/yellow]")
    if not result.succeeded:
        console.print(f"[red]{failure_of(result)}[/red]")
        raise typer.Exit(1)
    console.print(f"models: {folder / 'models'}")


def failure_of(result: FleetDemoResult) -> str:
    """What stopped the run, in a line."""
    for label, job in (("data", result.data), ("training", result.training)):
        if job is not None and job.status != "Completed":
            return f"the {label} job ended {job.status}: {job.failure_reason}"
    if result.traffic is None:
        return "no models were served"
    if result.traffic.errors:
        return "requests failed: " + "; ".join(result.traffic.first_errors)
    return f"{result.traffic.models_answered} of {result.models_trained} models answered a request"


def _ms(values: list[float], q: float) -> str:
    value = percentile(values, q)
    return "-" if value is None else f"{value * 1000:.1f}"


def summary_table(result: FleetDemoResult, plan: FleetDemoPlan) -> Table:
    table = Table(title=f"stoker fleet demo: {result.elapsed_s:.1f} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    if result.data is not None:
        table.add_row("data job", result.data.status)
        table.add_row("customers written", str(result.customers_written))
        table.add_row("bad rows skipped", str(result.rows_skipped))
    if result.training is not None:
        seconds = result.training.seconds
        table.add_row(f"training job ({plan.workers} workers)", result.training.status)
        table.add_row("models trained", str(result.models_trained))
        table.add_row("training time (s)", "-" if seconds is None else f"{seconds:.1f}")
        rate = result.models_per_s
        table.add_row("models trained per second", "-" if rate is None else f"{rate:.2f}")
        table.add_row("models failed", str(len(result.failed_models)))
    traffic = result.traffic
    if traffic is not None:
        table.add_row("requests (boto3 invoke_endpoint)", str(traffic.requests))
        table.add_row("models answered", str(traffic.models_answered))
        table.add_row("request errors", str(sum(traffic.errors.values())))
        hit = result.hit_rate
        table.add_row("cache hit rate (memory tier)", "-" if hit is None else f"{hit:.3f}")
        table.add_row(
            "hot latency p50 / p99 (ms)", f"{_ms(traffic.hot_s, 50)} / {_ms(traffic.hot_s, 99)}"
        )
        table.add_row(
            "cold latency p50 / p99 (ms)", f"{_ms(traffic.cold_s, 50)} / {_ms(traffic.cold_s, 99)}"
        )
        if traffic.elapsed_s:
            table.add_row("requests per second", f"{traffic.requests / traffic.elapsed_s:.1f}")
    return table
