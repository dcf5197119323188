"""`stoker events tail`: print public lifecycle events as they happen.

By default through the API (GET /v1/events) with the caller's token, so it shows the events
of the token's team's jobs (every team's to an admin). `--direct` reads the bus itself, as
an operator with the bus's settings and credentials: every team's events, dead letters
included; it is an admin's tool and needs no token.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Annotated

import httpx
import typer
from rich.console import Console

from stoker.bus.consumer import Consumer
from stoker.cli.jobs import ApiUrl, Token
from stoker.client import DEFAULT_URL, ApiError, Client
from stoker.core import topics
from stoker.core.clock import SystemClock
from stoker.core.events import (
    EVENT_TYPES,
    CloudEvent,
    DeadLetter,
    JobAttemptFailed,
    JobCompleted,
    JobFailed,
    JobRetryScheduled,
    JobStatusChanged,
    JobStopped,
    NotificationSent,
)
from stoker.ports.bus import BusRecord
from stoker.settings import Settings

app = typer.Typer(help="Follow stoker's events.", no_args_is_help=True)
console = Console()

PUBLIC = [topics.COMPLETED, topics.FAILED, topics.STOPPED]
TOPIC_OF_TYPE = {
    JobCompleted.TYPE: topics.COMPLETED,
    JobFailed.TYPE: topics.FAILED,
    JobStopped.TYPE: topics.STOPPED,
    JobStatusChanged.TYPE: topics.LIFECYCLE,
    JobRetryScheduled.TYPE: topics.LIFECYCLE,
    JobAttemptFailed.TYPE: topics.LIFECYCLE,
    NotificationSent.TYPE: topics.NOTIFICATIONS,
    DeadLetter.TYPE: topics.DEAD_LETTER,
}


@app.command("tail")
def tail(
    *,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="only these types, e.g. stoker.job.failed.v1 (repeatable)"),
    ] = None,
    all_topics: Annotated[
        bool,
        typer.Option(
            "--all",
            help="also every transition and notification (and dead letters: admins, --direct)",
        ),
    ] = False,
    from_beginning: Annotated[bool, typer.Option(help="print past events too")] = False,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="read the bus itself (operators: the bus's settings, every team's events)",
        ),
    ] = False,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print JobCompleted, JobFailed and JobStopped events live (Ctrl-C to stop)."""
    from stoker.cli.run import settings_or_exit

    unknown = sorted(set(event_type or []) - set(EVENT_TYPES))
    if unknown:
        typer.secho(f"unknown event type(s): {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    if not direct:
        _tail_api(api, token, event_type or [], all_topics, from_beginning)
        return
    settings = settings_or_exit()
    names = PUBLIC + (
        [topics.LIFECYCLE, topics.NOTIFICATIONS, topics.DEAD_LETTER] if all_topics else []
    )
    asyncio.run(_tail(settings, names, set(event_type or []), from_beginning))


def _tail_api(
    api: str, token: str | None, types: list[str], all_topics: bool, from_beginning: bool
) -> None:
    try:
        with Client(api, token=token) as client:
            for event in client.events(
                types=types, all_topics=all_topics, from_beginning=from_beginning
            ):
                _print(event, _topic_of(event))
        typer.secho("the API ended the stream (it is stopping)", err=True)
    except KeyboardInterrupt:
        return
    except ApiError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        typer.secho(f"cannot reach the API at {api}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _print(event: CloudEvent, where: str) -> None:
    body = event.data.model_dump_json(exclude_none=True)
    console.print(f"[bold]{event.type}[/bold] {where} {event.subject} {body}")


def _topic_of(event: CloudEvent) -> str:
    """The topic an event type is published on (the stream does not say)."""
    return TOPIC_OF_TYPE.get(event.type, "")


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
        _print(event, record.topic)

    # A group of its own: tailing never takes records from the services' groups.
    group = f"stoker-tail-{uuid.uuid4().hex[:8]}"
    try:
        await Consumer.for_events(bus, group, names, show).run(stop)
    finally:
        await bus.close()
