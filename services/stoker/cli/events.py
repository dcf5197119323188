"""`stoker events tail`: print public lifecycle events as they happen.

By default through the API (GET /v1/events) with the caller's token, so it shows the events
of the token's team's jobs (every team's to an admin). `--direct` reads the bus itself, as
an operator with the bus's settings and credentials: every team's events, dead letters
included; it is an admin's tool and needs no token.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape

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
    JobDescribed,
    JobFailed,
    JobRetryScheduled,
    JobStatusChanged,
    JobStopped,
    NotificationSent,
)
from stoker.lifecycle.outbox_events import TERMINAL_TOPICS
from stoker.logs import configure_logging
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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="one CloudEvent per line (structured JSON), for scripts to consume"
        ),
    ] = False,
) -> None:
    """Print JobCompleted, JobFailed and JobStopped events live (Ctrl-C to stop)."""
    from stoker.cli.run import settings_or_exit

    unknown = sorted(set(event_type or []) - set(EVENT_TYPES))
    if unknown:
        typer.secho(f"unknown event type(s): {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    if not direct:
        _tail_api(
            api,
            token,
            event_type or [],
            all_topics=all_topics,
            from_beginning=from_beginning,
            as_json=as_json,
        )
        return
    settings = settings_or_exit()
    # Logs go to stderr, so standard output carries only the events (one per line with --json).
    configure_logging(settings.log_level, json=settings.log_json)
    names = PUBLIC + (
        [topics.LIFECYCLE, topics.NOTIFICATIONS, topics.DEAD_LETTER] if all_topics else []
    )
    asyncio.run(_tail(settings, names, set(event_type or []), from_beginning, as_json))


def show_event(event: CloudEvent, topic: str, *, as_json: bool) -> None:
    """Print one event: its CloudEvent JSON on one line (`--json`), or a line for people."""
    if as_json:
        sys.stdout.write(event_line(event) + "\n")
        sys.stdout.flush()  # a script reading a pipe sees each event as it comes
        return
    body = escape(event.data.model_dump_json(exclude_none=True))
    console.print(f"[bold]{event.type}[/bold] {topic} {event.subject} {body}")


def event_line(event: CloudEvent) -> str:
    """The event as published: structured-mode CloudEvents JSON, on one line."""
    return event.to_json().decode()


def _tail_api(
    api: str,
    token: str | None,
    types: list[str],
    *,
    all_topics: bool,
    from_beginning: bool,
    as_json: bool,
) -> None:
    try:
        with Client(api, token=token) as client:
            for event in client.events(
                types=types, all_topics=all_topics, from_beginning=from_beginning
            ):
                show_event(event, _topic_of(event), as_json=as_json)
        typer.secho("the API ended the stream (it is stopping)", err=True)
    except KeyboardInterrupt:
        return
    except ApiError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        typer.secho(f"cannot reach the API at {api}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _topic_of(event: CloudEvent) -> str:
    """The topic an event type is published on (the stream does not say)."""
    if isinstance(event.data, JobDescribed):
        return TERMINAL_TOPICS[event.data.status]
    return TOPIC_OF_TYPE.get(event.type, "")


async def _tail(
    settings: Settings,
    names: list[str],
    wanted: set[str],
    from_beginning: bool,
    as_json: bool = False,
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
        show_event(event, record.topic, as_json=as_json)

    # A group of its own: tailing never takes records from the services' groups.
    group = f"stoker-tail-{uuid.uuid4().hex[:8]}"
    try:
        await Consumer.for_events(bus, group, names, show).run(stop)
    finally:
        await bus.close()
