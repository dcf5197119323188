"""`stoker pipelines`, `stoker executions` and `stoker schedules`, over the HTTP API.

The token is found as for `stoker jobs` (`--token`, else STOKER_TOKEN, the config file, the
data folder's api-token), and the API shows only the token's team's work."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stoker.cli.jobs import ApiUrl, Token
from stoker.client import DEFAULT_URL, ApiError, PipelinesClient

pipelines_app = typer.Typer(
    help="Upsert, list, describe, start and delete pipelines.", no_args_is_help=True
)
executions_app = typer.Typer(
    help="List, show, wait for, and stop pipeline executions.", no_args_is_help=True
)
schedules_app = typer.Typer(
    help="Put, list, pause, resume and delete pipeline schedules.", no_args_is_help=True
)

console = Console()
err = Console(stderr=True)


@contextlib.contextmanager
def _client(api: str, token: str | None) -> Iterator[PipelinesClient]:
    """An API refusal is a red line per problem and exit code 1, not a trace."""
    try:
        with PipelinesClient(api, token=token) as client:
            yield client
    except ApiError as exc:
        err.print(f"[red]HTTP {exc.status_code}: {exc.error}[/red]")
        for field, problem in exc.problems.items():
            err.print(f"  {field}: {problem}")
        raise typer.Exit(1) from exc
    except TimeoutError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def _parameters(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="-p")
        found[key] = value
    return found


def _time(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


# stoker pipelines ...


@pipelines_app.command("upsert")
def upsert(
    name: str,
    definition: Annotated[
        Path,
        typer.Option("--definition", "-d", exists=True, dir_okay=False, help="the definition JSON"),
    ],
    description: Annotated[str | None, typer.Option(help="what the pipeline is for")] = None,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Create the pipeline NAME, or replace its definition."""
    text = definition.read_text(encoding="utf-8")
    with _client(api, token) as client:
        stored = client.upsert(name, text, description)
    console.print(f"{stored['name']}: version {stored['version']} ({stored['arn']})")


@pipelines_app.command("list")
def list_pipelines(api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Your team's pipelines (every team's for an admin)."""
    with _client(api, token) as client:
        found = client.list_pipelines()
    table = Table("name", "team", "version", "steps", "updated", "description")
    for p in found:
        steps = p["definition"].get("Steps", [])
        table.add_row(
            p["name"],
            p["team"],
            str(p["version"]),
            str(len(steps)),
            _time(p["updated_at"]),
            p["description"] or "",
        )
    console.print(table)


@pipelines_app.command("describe")
def describe(name: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """The pipeline's definition and its newest executions."""
    with _client(api, token) as client:
        stored = client.describe(name)
        executions = client.executions(name, limit=10)["items"]
    console.print(f"[bold]{stored['name']}[/bold] version {stored['version']} ({stored['arn']})")
    console.print_json(json.dumps(stored["definition"]))
    console.print(_executions_table(executions))


@pipelines_app.command("start")
def start(
    name: str,
    parameter: Annotated[
        list[str] | None, typer.Option("--parameter", "-p", help="key=value, repeatable")
    ] = None,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Start an execution of NAME; parameters not given take their defaults."""
    values = _parameters(parameter or [])
    with _client(api, token) as client:
        execution = client.start(name, values)
    console.print(f"{execution['execution_id']}: {execution['status']}")


@pipelines_app.command("delete")
def delete(name: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Delete the pipeline; its executions stay, for the record."""
    with _client(api, token) as client:
        client.delete(name)
    console.print(f"{name}: deleted")


# stoker executions ...


def _executions_table(executions: list[Any]) -> Table:
    table = Table("execution", "pipeline", "status", "started", "ended", "reason")
    for e in executions:
        table.add_row(
            e["execution_id"],
            e["pipeline_name"],
            e["status"],
            _time(e["started_at"]),
            _time(e["ended_at"]),
            (e["failure_reason"] or "")[:60],
        )
    return table


def _steps_table(execution: Any) -> Table:
    table = Table("step", "status", "attempt", "job", "started", "ended", "note")
    for s in execution["steps"]:
        note = s["failure_reason"] or ""
        if s["cache_hit_of"]:
            note = f"cache hit of {s['cache_hit_of']}"
        elif s["outcome"] is not None:
            note = f"outcome {s['outcome']}"
        table.add_row(
            s["name"],
            s["status"],
            str(s["attempt"]),
            s["job_id"] or "",
            _time(s["started_at"]),
            _time(s["ended_at"]),
            note[:60],
        )
    return table


@executions_app.command("list")
def list_executions(  # noqa: PLR0917 (typer passes options positionally)
    pipeline: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="executions on the page")] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="where the page starts: the cursor a page printed")
    ] = None,
    oldest_first: Annotated[bool, typer.Option("--oldest-first")] = False,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """The executions of PIPELINE, newest first, a page at a time."""
    with _client(api, token) as client:
        page = client.executions(pipeline, limit=limit, cursor=cursor, oldest_first=oldest_first)
    console.print(_executions_table(page["items"]))
    if page["next_cursor"] is not None:
        console.print(f"more: --cursor {page['next_cursor']}", soft_wrap=True)


@executions_app.command("show")
def show(execution_id: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """One execution, its parameters and its steps."""
    with _client(api, token) as client:
        execution = client.execution(execution_id)
    console.print(_executions_table([execution]))
    console.print(f"parameters: {json.dumps(execution['parameters'])}")
    console.print(_steps_table(execution))


@executions_app.command("steps")
def steps(execution_id: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """The steps of one execution."""
    with _client(api, token) as client:
        execution = client.execution(execution_id)
    console.print(_steps_table(execution))


@executions_app.command("wait")
def wait(
    execution_id: str,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.0)] = 3600.0,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Wait for the execution to end; exit code 0 when it succeeded, 1 otherwise."""
    with console.status(f"waiting for {execution_id}"), _client(api, token) as client:
        execution = client.wait(execution_id, timeout_s=timeout_s)
    console.print(_steps_table(execution))
    console.print(f"{execution_id}: {execution['status']}")
    if execution["status"] != "Succeeded":
        raise typer.Exit(1)


@executions_app.command("stop")
def stop(execution_id: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Stop an execution: running steps are asked to stop, nothing new starts."""
    with _client(api, token) as client:
        execution = client.stop_execution(execution_id)
    console.print(f"{execution_id}: {execution['status']}")


# stoker schedules ...


def _schedules_table(found: list[Any]) -> Table:
    table = Table("name", "pipeline", "expression", "enabled", "start", "last tick", "last run")
    for s in found:
        table.add_row(
            s["name"],
            s["pipeline"],
            s["expression"],
            "yes" if s["enabled"] else "paused",
            _time(s["start_date"]),
            _time(s["last_tick"]),
            s["last_execution_id"] or "",
        )
    return table


@schedules_app.command("put")
def put_schedule(  # noqa: PLR0917 (typer passes options positionally)
    name: str,
    pipeline: Annotated[str, typer.Option("--pipeline", help="the pipeline it starts")],
    expression: Annotated[
        str, typer.Option("--expression", "-e", help="cron(...) six fields, rate(...), at(...)")
    ],
    start_date: Annotated[
        str | None, typer.Option(help="no tick before this UTC time (ISO 8601)")
    ] = None,
    allow_overlap: Annotated[
        bool, typer.Option(help="start a tick while the previous execution runs")
    ] = False,
    catch_up: Annotated[bool, typer.Option(help="after downtime, run every missed tick")] = False,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Make a schedule; every scheduled execution takes the parameters' defaults."""
    with _client(api, token) as client:
        stored = client.put_schedule(
            name,
            pipeline,
            expression,
            start_date=start_date,
            allow_overlap=allow_overlap,
            catch_up=catch_up,
        )
    console.print(_schedules_table([stored]))


@schedules_app.command("list")
def list_schedules(api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Your team's schedules."""
    with _client(api, token) as client:
        found = client.schedules()
    console.print(_schedules_table(found))


@schedules_app.command("pause")
def pause(name: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Pause: no tick starts until it is resumed."""
    with _client(api, token) as client:
        stored = client.pause_schedule(name)
    console.print(_schedules_table([stored]))


@schedules_app.command("resume")
def resume(name: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    """Resume; the ticks that fell while paused are not run."""
    with _client(api, token) as client:
        stored = client.resume_schedule(name)
    console.print(_schedules_table([stored]))


@schedules_app.command("delete")
def delete_schedule(name: str, api: ApiUrl = DEFAULT_URL, token: Token = None) -> None:
    with _client(api, token) as client:
        client.delete_schedule(name)
    console.print(f"{name}: deleted")
