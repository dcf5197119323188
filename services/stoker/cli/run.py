"""`stoker run SERVICE...` and `stoker up`: run services in this process until SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from stoker.app.local_token import describe, prepare_local_token
from stoker.app.process import run_service_process
from stoker.app.services import SERVICES, serve
from stoker.core.errors import ConfigurationError
from stoker.logs import configure_logging
from stoker.settings import Mode, Settings, load_settings

app = typer.Typer(help="Run stoker services.")

ALL = list(SERVICES)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


@app.command("run")
def run(
    services: Annotated[list[str], typer.Argument(help=f"one or more of: {', '.join(ALL)}")],
) -> None:
    """Run the named services in this process until SIGTERM."""
    unknown = sorted(set(services) - set(ALL))
    if unknown:
        typer.secho(f"unknown service(s): {', '.join(unknown)}; expected {ALL}", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    configure_logging(settings.log_level, json=settings.log_json)
    run_service_process(serve(settings, services), settings)


@app.command("up")
def up() -> None:
    """Run every service in this process (the whole stack on one machine). On the embedded
    default, first print the local API token (made at the first start)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.mode is Mode.EMBEDDED:
        for line in describe(asyncio.run(prepare_local_token(settings))):
            typer.echo(line)
    run_service_process(serve(settings, ALL), settings)
