"""Runnable services. Each runs alone (`stoker run launcher`) or all together (`stoker up`).

Every service takes a started Runtime and a stop event; on SIGTERM the event is set, the
consumers finish and commit the batch in hand, launches in flight complete, and the process
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import structlog

from stoker.app.auth import api_rate_limiter, build_authenticator, team_quota
from stoker.app.notifier import build_ledger, notify_submit_rules, run_notifier
from stoker.app.pipelines import build_pipeline_store, pipeline_operations, run_pipelines
from stoker.app.runtime import (
    Runtime,
    failure_classifier,
    launcher_config,
    monitor_lease,
    retry_policy,
)
from stoker.app.telemetry import metrics_endpoint, traces_exported
from stoker.bus.consumer import BACKGROUND, LAUNCH_PATH, Consumer
from stoker.core import topics
from stoker.core.events import CloudEvent, JobSubmitted
from stoker.lifecycle.capacity import new_owner
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.leadership import Leadership
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.retrier import Retrier
from stoker.lifecycle.state_changes import decode_state_change
from stoker.lifecycle.transitions import OutboxRelay
from stoker.ports.auth import Authenticator
from stoker.ports.bus import BusRecord
from stoker.settings import Settings

log = structlog.get_logger("stoker.services")

Service = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


def lifecycle_consumer(
    rt: Runtime, group: str, role: Launcher | Monitor | Retrier
) -> Consumer[CloudEvent]:
    """The role's consumer of the lifecycle topic: it passes over the event types and status
    changes the role does not act on without validating them. It is a `BACKGROUND` member,
    or `LAUNCH_PATH` if the role is on it (`ON_LAUNCH_PATH`: only the launcher's is)."""
    return Consumer.for_events(
        rt.bus,
        group,
        [topics.LIFECYCLE],
        role.on_event,
        wanted=role.WANTED,
        statuses=role.WANTED_STATUSES,
        config=LAUNCH_PATH if role.ON_LAUNCH_PATH else BACKGROUND,
    )


def _server_class() -> type:
    import uvicorn

    class ServerWithoutSignals(uvicorn.Server):
        """The process owns SIGTERM (it stops every service), not uvicorn."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return ServerWithoutSignals


def authenticator(rt: Runtime) -> Authenticator:
    """What checks the API's bearer tokens: stoker tokens in the job store, then OIDC/JWT
    when an issuer is configured."""
    return build_authenticator(rt.settings, tokens=rt.tokens, clock=rt.clock)


async def run_api(rt: Runtime, stop: asyncio.Event) -> None:
    import uvicorn

    from stoker.api.app import create_app
    from stoker.api.endpoint_panel import EndpointMetricsSource
    from stoker.api.events import EventFeed
    from stoker.api.router_panel import RouterMetricsSource
    from stoker.notifier.config import load_notify_settings
    from stoker.notifier.sent import JobNotifications

    _ServerWithoutSignals = _server_class()

    service = JobService(
        rt.transitioner(),
        rt.clock,
        rules=rt.submission_rules(),
        notify_rules=notify_submit_rules(),
        quota=team_quota(rt.settings, rt.store),
    )
    feed = EventFeed(rt.bus, service, clock=rt.clock)
    router_url = rt.settings.dashboard_router_metrics_url
    endpoint_url = rt.settings.dashboard_endpoint_metrics_url
    notify = load_notify_settings()
    # The dashboard reads the notifier's ledger (a job's notifications) through a client of
    # its own: the same SQLite file or DynamoDB table the notifier writes. A memory ledger
    # is the notifier's alone: the dashboard then says it has none to read.
    ledger = None if notify.ledger == "memory" else build_ledger(rt.settings, notify)
    if ledger is not None:
        await ledger.start()
    notifications = (
        JobNotifications(
            ledger, notify, str(notify.file_path or rt.settings.data_dir / "notifications.jsonl")
        )
        if ledger is not None
        else None
    )
    pipeline_store = build_pipeline_store(rt.settings)
    await pipeline_store.start()
    pipelines = pipeline_operations(rt, pipeline_store, service)
    config = uvicorn.Config(
        create_app(
            service,
            authenticator(rt),
            events=feed,
            rate_limiter=api_rate_limiter(rt.settings),
            router_metrics=RouterMetricsSource(router_url) if router_url else None,
            endpoint_metrics=EndpointMetricsSource(endpoint_url) if endpoint_url else None,
            notifications=notifications,
            trace_url=rt.settings.dashboard_trace_url,
            pipelines=pipelines,
        ),
        host=rt.settings.api_host,
        port=rt.settings.api_port,
        log_config=None,
        access_log=False,
    )
    server = _ServerWithoutSignals(config)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    feed.closing.set()  # open event streams end, so the server can finish its connections
    server.should_exit = True
    try:
        await task
    finally:
        if ledger is not None:
            await ledger.close()
        if pipelines is not None:
            await pipelines.close()
        await pipeline_store.close()


async def run_intake(rt: Runtime, stop: asyncio.Event) -> None:
    """JobSubmitted events from any Kafka client become jobs, through the same path as HTTP
    and under the same checks: a request that fails them is dead-lettered with the reason."""
    service = JobService(
        rt.transitioner(),
        rt.clock,
        rules=rt.submission_rules(),
        notify_rules=notify_submit_rules(),
    )

    async def handle(event: CloudEvent, _record: BusRecord) -> None:
        if isinstance(event.data, JobSubmitted):
            await service.submit(event.data.spec, team=event.data.team)

    await Consumer.for_events(rt.bus, "stoker-intake", [topics.SUBMISSIONS], handle).run(stop)


async def run_launcher(rt: Runtime, stop: asyncio.Event) -> None:
    launcher = Launcher(rt.transitioner(), rt.backend, rt.clock, launcher_config(rt.settings))
    await launcher.recover()
    consumer = lifecycle_consumer(rt, "stoker-launcher", launcher)
    try:
        await asyncio.gather(
            consumer.run(stop), launcher.run_due_timer(stop), launcher.run_peers(stop)
        )
    finally:
        await launcher.drain()


MONITOR_LEASE = "monitor"


async def run_monitor(rt: Runtime, stop: asyncio.Event) -> None:
    """One monitor of a deployment is active, the others stand by (ADR 0024)."""
    lease = monitor_lease(rt.settings)
    leadership = Leadership(rt.capacity, MONITOR_LEASE, new_owner(), rt.clock, lease)
    await leadership.run(stop, functools.partial(_run_active_monitor, rt))


async def _run_active_monitor(rt: Runtime, stop: asyncio.Event) -> None:
    config = MonitorConfig(
        poll_interval_s=rt.settings.poll_interval_s,
        api_rate_per_s=rt.settings.monitor_api_rate_per_s,
    )
    monitor = Monitor(rt.transitioner(), rt.backend, rt.clock, config)
    await monitor.recover()
    consumer = lifecycle_consumer(rt, "stoker-monitor", monitor)
    loops = [consumer.run(stop), monitor.run(stop)]
    if rt.settings.sagemaker_state_changes:
        changes = Consumer(
            rt.bus,
            "stoker-monitor-state-changes",
            [topics.SAGEMAKER_STATE_CHANGES],
            monitor.on_state_change,
            decode=decode_state_change,
            config=BACKGROUND,
        )
        loops.append(changes.run(stop))
    await asyncio.gather(*loops)


async def run_retrier(rt: Runtime, stop: asyncio.Event) -> None:
    retrier = Retrier(
        rt.transitioner(),
        rt.clock,
        policy=retry_policy(rt.settings),
        classifier=failure_classifier(rt.settings),
    )
    consumer = lifecycle_consumer(rt, "stoker-retrier", retrier)
    await consumer.run(stop)


async def run_relay(rt: Runtime, stop: asyncio.Event) -> None:
    await OutboxRelay(
        rt.store, rt.bus, rt.clock, store_delivers_outbox=rt.store_delivers_outbox
    ).run(stop)


SERVICES: dict[str, Service] = {
    "api": run_api,
    "intake": run_intake,
    "launcher": run_launcher,
    "monitor": run_monitor,
    "retrier": run_retrier,
    "relay": run_relay,
    "notifier": run_notifier,
    "pipelines": run_pipelines,
}
"""The one registry of runnable services: `stoker run NAME...`, `stoker up` and the demo."""

NEEDS_BACKEND = frozenset({"launcher", "monitor"})


async def serve(settings: Settings, names: list[str]) -> None:
    """Start the named services in this process and stop them cleanly on SIGTERM or SIGINT,
    with the process's metrics endpoint and, when configured, trace export."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with (
        metrics_endpoint(settings.metrics_host, settings.metrics_port),
        traces_exported(settings, names),
    ):
        async with Runtime(settings, with_backend=bool(NEEDS_BACKEND & set(names))) as rt:
            await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
            await run_services(rt, names, stop)


async def run_services(
    rt: Runtime,
    names: list[str],
    stop: asyncio.Event,
    *,
    services: dict[str, Service] | None = None,
) -> None:
    """Run the named services until `stop`; if one fails, stop the others and re-raise."""
    table = services or SERVICES
    tasks: set[asyncio.Task[None]] = {
        asyncio.create_task(table[name](rt, stop), name=name) for name in names
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                log.error(
                    "service failed; stopping the others",
                    service=task.get_name(),
                    error=repr(error),
                )
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise error
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
