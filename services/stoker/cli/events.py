"""`stoker events tail`: print public lifecycle events as they happen."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Annotated

import typer
from rich.console import Console

from stoker.bus.consumer import Consumer
from stoker.core import topics
from stoker.core.clock import SystemClock
from stoker.core.events import EVENT_TYPES, CloudEvent
from stoker.ports.bus import BusRecord
from stoker.settings import Settings

app = typer.Typer(help="Follow stoker's events.", no_args_is_help=True)
console = Console()

PUBLIC = [topics.COMPLETED, topics.FAILED, topics.STOPPED]


@app.command("tail")
def tail(
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="only these types, e.g. stoker.job.failed.v1 (repeatable)"),
    ] = None,
    all_topics: Annotated[
        bool, typer.Option("--all", help="also lifecycle, notification and dead-letter topics")
    ] = False,
    from_beginning: Annotated[bool, typer.Option(help="print past events too")] = False,
) -> None:
    """Print JobCompleted, JobFailed and JobStopped events live (Ctrl-C to stop)."""
    from stoker.cli.run import settings_or_exit

    unknown = sorted(set(event_type or []) - set(EVENT_TYPES))
    if unknown:
        typer.secho(f"unknown event type(s): {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    names = PUBLIC + (
        [topics.LIFECYCLE, topics.NOTIFICATIONS, topics.DEAD_LETTER] if all_topics else []
    )
    asyncio.run(_tail(settings, names, set(event_type or []), from_beginning))


async def _tail(
    settings: Settings, names: list[str], wanted: set[str], from_beginning: bool
) -> None:
    from stoker.app.runtime import build_bus

    started = SystemClock().now()
    bus = build_bus(settings)
    await bus.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def show(event: CloudEvent, record: BusRecord) -> None:
        if wanted and event.type not in wanted:
            return
        if not from_beginning and event.time < started:
            return
        body = event.data.model_dump_json(exclude_none=True)
        console.print(f"[bold]{event.type}[/bold] {record.topic} {event.subject} {body}")

    # A group of its own: tailing never takes records from the services' groups.
    group = f"stoker-tail-{uuid.uuid4().hex[:8]}"
    try:
        await Consumer.for_events(bus, group, names, show).run(stop)
    finally:
        await bus.close()
