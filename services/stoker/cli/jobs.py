"""`stoker submit` and `stoker jobs list|show|stop|watch`, over the HTTP API.

Each call carries a bearer token: `--token`, else the SDK's lookup (STOKER_TOKEN, the
config file, the data folder's api-token; see `stoker.client`). The API shows only the
token's team's jobs (every team's to an admin)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stoker.client import DEFAULT_URL, ApiError, Client
from stoker.core.errors import JobNotFound
from stoker.core.job import JobRecord, JobStatus
from stoker.lifecycle.jobs import InvalidJobSpec, parse_spec

app = typer.Typer(help="List, show, stop and watch jobs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ApiUrl = Annotated[str, typer.Option("--api", envvar="STOKER_API_URL", help="the API's base URL")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="bearer token (default: STOKER_TOKEN, the config file, the data folder's "
        "api-token; prefer those: a command line is visible to other users)",
        show_default=False,
    ),
]


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """An API refusal (401, 403, 404, 409...) is a red line and exit code 1, not a trace."""
    try:
        yield
    except (ApiError, JobNotFound) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def load_specs(path: Path) -> list[Any]:
    """One job or many, from YAML or JSON (a mapping, a list, or a mapping with `jobs:`)."""
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if isinstance(doc, dict) and isinstance(doc.get("jobs"), list):
        return list(doc["jobs"])
    if isinstance(doc, list):
        return doc
    return [doc]


def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML or JSON")],
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Submit the job(s) in FILE. Every spec is checked before any is sent."""
    raw = load_specs(file)
    problems: list[str] = []
    specs = []
    for index, item in enumerate(raw):
        try:
            specs.append(parse_spec(item))
        except InvalidJobSpec as exc:
            prefix = f"job[{index}]." if len(raw) > 1 else ""
            problems += [f"{prefix}{field}: {problem}" for field, problem in exc.problems.items()]
    if problems:
        err.print("[red]invalid job spec[/red]")
        for line in problems:
            err.print(f"  {line}")
        raise typer.Exit(2)
    table = Table("job id", "owner", "team", "result")
    with Client(api, token=token) as client:
        for spec in specs:
            try:
                result = client.submit(spec)
            except ApiError as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from exc
            table.add_row(
                result.job.job_id,
                result.job.owner,
                result.job.team,
                "created" if result.created else "exists",
            )
    console.print(table)


def _jobs_table(jobs: list[JobRecord]) -> Table:
    table = Table(
        "job id", "owner", "team", "status", "attempt", "instance type", "updated", "reason"
    )
    for job in jobs:
        table.add_row(
            job.job_id,
            job.owner,
            job.team,
            job.status.value,
            str(job.attempt),
            str(job.details.get("instance_type", "")),
            job.updated_at.strftime("%H:%M:%S"),
            (job.failure_reason or "")[:60],
        )
    return table


@app.command("list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="only jobs in this status")] = None,
    owner: Annotated[str | None, typer.Option(help="only this owner's jobs")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List jobs, newest first: your team's (every team's for an admin token)."""
    with _refusals(), Client(api, token=token) as client:
        page = client.list_jobs(status=status, owner=owner, limit=limit)
    console.print(_jobs_table(page.items))
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@app.command("show")
def show(job_id: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Show one job and its history."""
    with _refusals(), Client(api, token=token) as client:
        job = client.get(job_id)
        history = client.history(job_id)
    console.print(_jobs_table([job]))
    table = Table("version", "at", "from", "to", "attempt", "reason")
    for line in history:
        table.add_row(
            str(line.version),
            line.at.isoformat(timespec="seconds"),
            line.from_status.value if line.from_status else "",
            line.to_status.value,
            str(line.attempt),
            line.reason or "",
        )
    console.print(table)


@app.command("stop")
def stop(job_id: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Stop a job."""
    with _refusals(), Client(api, token=token) as client:
        job = client.stop(job_id)
    console.print(f"{job.job_id}: {job.status.value}")


@app.command("watch")
def watch(
    owner: Annotated[str | None, typer.Option(help="only this owner's jobs")] = None,
    interval_s: Annotated[float, typer.Option(min=0.2)] = 2.0,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """A live table of the newest jobs; Ctrl-C to leave."""
    with (
        _refusals(),
        Client(api, token=token) as client,
        Live(console=console, refresh_per_second=4) as live,
    ):
        try:
            while True:
                live.update(_jobs_table(client.list_jobs(owner=owner, limit=30).items))
                time.sleep(interval_s)
        except KeyboardInterrupt:
            return
