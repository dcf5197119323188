"""The notifier as one runnable service: `run_notifier(settings_or_runtime, stop_event)`.

Builds the ledger and channels from settings, then runs the shared consumer (terminal
topics, group `stoker-notifier`) and the flusher side by side until `stop_event` is set.
If either task dies, the other is stopped and the error is raised: a notifier that has
stopped sending must not keep committing events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import structlog

from stoker.adapters.notifier.console import ConsoleChannel, FileChannel
from stoker.adapters.notifier.ledger_memory import MemoryLedger
from stoker.adapters.notifier.outbound import OutboundHttp
from stoker.adapters.notifier.webhook import WebhookChannel
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core.clock import Clock, SystemClock
from stoker.core.notify_rules import NotifyRules
from stoker.notifier.config import NotifySettings, load_notify_settings
from stoker.notifier.secrets import load_team_secrets, submit_rules
from stoker.notifier.service import CONSUMER_GROUP, TERMINAL_TOPICS, Notifier
from stoker.ports.bus import EventBus
from stoker.ports.channel import Channel
from stoker.ports.ledger import NotificationLedger
from stoker.ports.store import JobStore
from stoker.settings import Settings

log = structlog.get_logger("stoker.notifier")


def build_ledger(settings: Settings, notify: NotifySettings) -> NotificationLedger:
    kind = notify.ledger
    if kind == "auto":
        kind = settings.store_kind.value  # the ledger lives beside the job store
    if kind == "memory":
        return MemoryLedger()
    if kind == "sqlite":
        from stoker.adapters.notifier.ledger_sqlite import SqliteLedger

        return SqliteLedger(notify.ledger_path or settings.data_dir / "notifier-ledger.sqlite3")
    from stoker.adapters.notifier.ledger_dynamodb import DynamoDbLedger

    return DynamoDbLedger(settings, notify.ledger_table)


def notify_submit_rules(notify: NotifySettings | None = None) -> NotifyRules:
    """What a submission's `notify` list must satisfy, for the API and the intake: refs of
    the team's own secrets (read from the same settings as the notifier's), no raw URLs.
    The secrets' values are remembered for redaction in this process too."""
    notify = notify or load_notify_settings()
    return submit_rules(notify, load_team_secrets(notify))


def outbound_http(notify: NotifySettings) -> OutboundHttp:
    """HTTP to the URLs users chose, under the SSRF rules of the settings."""
    return OutboundHttp(
        notify.outbound_policy(),
        timeout_s=notify.timeout_s,
        connect_timeout_s=notify.connect_timeout_s,
        max_response_bytes=notify.max_response_bytes,
    )


def build_channels(
    settings: Settings, notify: NotifySettings, clock: Clock | None = None
) -> dict[str, Channel]:
    """One channel per target kind that can be served with the settings given."""
    channels: dict[str, Channel] = {
        "console": ConsoleChannel(),
        "file": FileChannel(),
        "webhook": WebhookChannel(outbound_http(notify), clock=clock),
    }
    from stoker.adapters.notifier.slack import SlackChannel

    token = notify.slack_bot_token.get_secret_value() if notify.slack_bot_token else None
    channels["slack"] = SlackChannel(
        token,
        api_base_url=notify.slack_api_url,
        clock=clock,
        timeout_s=int(notify.timeout_s),
        http=outbound_http(notify),
    )
    if notify.sns_topic_arn:
        from stoker.adapters.notifier.sns import SnsEmailChannel

        channels["email"] = SnsEmailChannel(
            notify.sns_topic_arn, region=settings.aws_region, endpoint_url=notify.sns_endpoint
        )
    return channels


async def serve(
    settings: Settings,
    stop_event: asyncio.Event,
    *,
    notify: NotifySettings | None = None,
    bus: EventBus | None = None,
    store: JobStore | None = None,
    ledger: NotificationLedger | None = None,
    clock: Clock | None = None,
) -> None:
    """Run until `stop_event` is set. Adapters not given are built from settings and
    closed on exit; adapters given are started by the caller and left open."""
    notify = notify or load_notify_settings()
    secrets = load_team_secrets(notify)
    clock = clock or SystemClock()
    from stoker.app.runtime import build_bus, build_store

    async with AsyncExitStack() as stack:
        if bus is None:
            bus = build_bus(settings)
            await bus.start()
            stack.push_async_callback(bus.close)
        if store is None:
            store = build_store(settings)
            await store.start()
            stack.push_async_callback(store.close)
        if ledger is None:
            ledger = build_ledger(settings, notify)
            await ledger.start()
            stack.push_async_callback(ledger.close)
        channels = build_channels(settings, notify, clock)
        for channel in channels.values():
            stack.push_async_callback(channel.close)
        notifier = Notifier(
            ledger=ledger,
            store=store,
            publisher=bus,
            channels=channels,
            settings=notify,
            fallback_file=str(notify.file_path or Path(settings.data_dir) / "notifications.jsonl"),
            clock=clock,
            secrets=secrets,
        )
        # A message people read is not late by a fetch held to gather records.
        consumer = Consumer.for_events(
            bus, CONSUMER_GROUP, TERMINAL_TOPICS, notifier.handle, config=BACKGROUND
        )
        log.info(
            "notifier started",
            digest_window_s=notify.digest_window_s,
            secret_teams=len(secrets.names()),
            allow_loopback=notify.allow_loopback,
        )
        await _run_both(consumer.run(stop_event), notifier.run_flusher(stop_event), stop_event)
        log.info("notifier stopped", sent=notifier.sent_messages, failed=notifier.failed_messages)


async def _run_both(
    consume: Coroutine[Any, Any, None], flush: Coroutine[Any, Any, None], stop_event: asyncio.Event
) -> None:
    tasks = [asyncio.ensure_future(consume), asyncio.ensure_future(flush)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("notifier task failed; stopping", error=repr(task.exception()))
                stop_event.set()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Started(Protocol):
    """What a started runtime offers a service: settings and open adapters."""

    settings: Settings
    bus: EventBus
    store: JobStore
    clock: Clock


async def run_notifier(source: Settings | _Started, stop_event: asyncio.Event) -> None:
    """Run the notifier until `stop_event` is set.

    `run_notifier(settings, stop)` builds (and closes) its own bus and store from settings;
    `run_notifier(runtime, stop)` uses a started runtime's bus, store and clock. The
    notifier's own settings come from STOKER_NOTIFY_* (see docs/notifications.md).
    """
    if isinstance(source, Settings):
        await serve(source, stop_event)
    else:
        await serve(
            source.settings, stop_event, bus=source.bus, store=source.store, clock=source.clock
        )
