"""`stoker run SERVICE...` and `stoker up`: run services in this process until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from stoker.app.process import run_service_process
from stoker.core.errors import ConfigurationError
from stoker.logs import configure_logging
from stoker.settings import Settings, load_settings

app = typer.Typer(help="Run stoker services.")

ALL = ["api", "intake", "launcher", "monitor", "retrier", "relay", "notifier"]


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


async def serve(settings: Settings, names: list[str]) -> None:
    """Start the named services and stop them cleanly on SIGTERM or SIGINT."""
    from stoker.app.runtime import Runtime
    from stoker.app.services import NEEDS_BACKEND, SERVICES, run_services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services = dict(SERVICES)
    if "notifier" in names:
        from stoker.app.notifier import run_notifier

        services["notifier"] = run_notifier
    async with Runtime(settings, with_backend=bool(NEEDS_BACKEND & set(names))) as rt:
        await rt.bus.ensure_topics(_topics())
        await run_services(rt, names, stop, services=services)


def _topics() -> list[str]:
    from stoker.core import topics

    return list(topics.ALL_TOPICS)


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
    """Run every service in this process (the whole stack on one machine)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, json=settings.log_json)
    run_service_process(serve(settings, ALL), settings)
