"""The launcher on Lambda: the job table's stream brings lifecycle events, a schedule brings
the sweep.

Stream batch: the `Launcher` takes the batch's New jobs in and launches them; ends and
retries free their slots. With instance caps configured it first rebuilds its slots from the
store (`Launcher.recover`), because caps count the jobs that hold a slot across every
invocation; without caps nothing needs counting and the batch alone is read. Launches still
running when the invocation nears its timeout are cancelled; their jobs stay New or
Launching in the store, and the next sweep resumes them.

Sweep (EventBridge schedule): `Launcher.recover`, which resumes launches left in Launching,
offers every New job and every retry whose due time has come, then the outbox relay pass,
which marks event items whose writer stopped before marking them (in this variant the
stream already delivered them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from stoker.app.aws_lambda.batch import StreamBatch, consume, is_stream_event
from stoker.app.aws_lambda.host import Deadline, LambdaContext, LambdaHost, within
from stoker.app.aws_lambda.schedule import is_scheduled_event, unexpected_event
from stoker.app.runtime import Runtime, launcher_config
from stoker.bus.consumer import LAUNCH_PATH, Consumer
from stoker.core import topics
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.transitions import OutboxRelay

log = structlog.get_logger("stoker.app.aws_lambda.launch")

GROUP = "stoker-launcher"
RELAY_BATCH = 200

HOST = LambdaHost(with_backend=True)


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point (`stoker.app.aws_lambda.launch.handler`)."""
    return handle(HOST, event, context)


def handle(
    host: LambdaHost, event: Mapping[str, Any], context: LambdaContext | None
) -> dict[str, Any]:
    deadline = Deadline.of(context, host.lambda_settings.deadline_margin_s)
    if is_stream_event(event):
        return host.run(lambda rt: on_stream(rt, event, deadline))
    if is_scheduled_event(event):
        return host.run(lambda rt: sweep(rt, deadline))
    raise unexpected_event(event, "a DynamoDB Stream batch or a scheduled event")


def launcher_for(rt: Runtime) -> Launcher:
    return Launcher(rt.transitioner(), rt.backend, rt.clock, launcher_config(rt.settings))


async def on_stream(rt: Runtime, event: Mapping[str, Any], deadline: Deadline) -> dict[str, Any]:
    launcher = launcher_for(rt)
    if rt.settings.instance_caps or rt.settings.default_instance_cap is not None:
        await launcher.recover()
    batch = StreamBatch(event, rt.bus)
    consumer = Consumer.for_events(
        batch.bus(),
        GROUP,
        [topics.LIFECYCLE],
        launcher.on_event,
        wanted=Launcher.WANTED,
        statuses=Launcher.WANTED_STATUSES,
        config=LAUNCH_PATH,
    )
    await consume(batch, [consumer], deadline)
    await _drain(launcher, deadline)
    return batch.response()


async def sweep(rt: Runtime, deadline: Deadline) -> dict[str, Any]:
    launcher = launcher_for(rt)
    await launcher.recover()
    await _drain(launcher, deadline)
    relay = OutboxRelay(rt.store, rt.bus, rt.clock, batch=RELAY_BATCH, store_delivers_outbox=True)
    marked = 0
    while deadline.left_s() > 0:
        count = await relay.run_once()
        marked += count
        if count < RELAY_BATCH:
            break
    return {"marked": marked}


async def _drain(launcher: Launcher, deadline: Deadline) -> None:
    if await within(_drained(launcher), deadline) is None:
        log.warning("launches still running at the deadline; the next sweep resumes them")


async def _drained(launcher: Launcher) -> bool:
    await launcher.drain()
    return True
