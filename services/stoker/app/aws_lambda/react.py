"""The job table stream's second reader: the retrier, stop requests and the notifier.

A DynamoDB Stream serves at most two readers per shard without throttling them, and the
launcher is the first; so the roles that react to what happened after a launch share this
one function, each with its own consumer group over the batch:

- `Retrier` decides on JobAttemptFailed (retry with a due time, or Failed);
- `Monitor` takes Stopping and Stopped status changes, then one `poll_once` sends the
  StopTrainingJob calls owed (and stops a training job created for a job stopped while
  queued);
- `Notifier` records one ledger entry per terminal job and target, then sends them
  (email through SNS, Slack, webhooks);
- the pipelines service (`stoker-pipelines`) takes step jobs' ends and advances their
  executions (`stoker.app.aws_lambda.pipelines` does the rest of its work on a schedule).

A role that fails leaves its records unfinished and Lambda retries the batch from the
earliest of them; the roles that succeeded see those records again and, as everywhere in
stoker, a repeat changes nothing (conditional writes, the ledger's one entry per target).

Sweep (EventBridge schedule): the notifier sends entries still pending (a send that failed
or ran out of time, or entries held for a digest window).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import structlog

from stoker.app.aws_lambda.batch import StreamBatch, consume, is_stream_event
from stoker.app.aws_lambda.host import Deadline, LambdaContext, LambdaHost, within
from stoker.app.aws_lambda.monitor import monitor_for
from stoker.app.aws_lambda.schedule import is_scheduled_event, unexpected_event
from stoker.app.notifier import build_channels, build_ledger
from stoker.app.pipelines import opened_pipeline_service
from stoker.app.runtime import Runtime, failure_classifier, retry_policy
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core import topics
from stoker.core.job import JobStatus
from stoker.lifecycle.monitor import Monitor
from stoker.lifecycle.retrier import Retrier
from stoker.notifier.config import NotifySettings, load_notify_settings
from stoker.notifier.service import CONSUMER_GROUP, TERMINAL_TOPICS, Notifier
from stoker.ports.bus import Publisher

log = structlog.get_logger("stoker.app.aws_lambda.react")

STOP_STATUSES = frozenset({JobStatus.STOPPING, JobStatus.STOPPED})
"""The status changes the monitor's consumer takes here; the rest of its work is the
monitor function's."""

HOST = LambdaHost(with_backend=True)


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point (`stoker.app.aws_lambda.react.handler`)."""
    return handle(HOST, event, context)


def handle(
    host: LambdaHost,
    event: Mapping[str, Any],
    context: LambdaContext | None,
    *,
    notify: NotifySettings | None = None,
) -> dict[str, Any]:
    """`notify` replaces the STOKER_NOTIFY_* settings of the environment."""
    deadline = Deadline.of(context, host.lambda_settings.deadline_margin_s)
    settings = notify or load_notify_settings()
    if is_stream_event(event):
        return host.run(lambda rt: on_stream(rt, event, deadline, settings))
    if is_scheduled_event(event):
        return host.run(lambda rt: sweep(rt, deadline, settings))
    raise unexpected_event(event, "a DynamoDB Stream batch or a scheduled event")


async def on_stream(
    rt: Runtime, event: Mapping[str, Any], deadline: Deadline, notify: NotifySettings
) -> dict[str, Any]:
    batch = StreamBatch(event, rt.bus)
    bus = batch.bus()
    retrier = Retrier(
        rt.transitioner(),
        rt.clock,
        policy=retry_policy(rt.settings),
        classifier=failure_classifier(rt.settings),
    )
    monitor = monitor_for(rt)
    consumers = [
        Consumer.for_events(
            bus,
            "stoker-retrier",
            [topics.LIFECYCLE],
            retrier.on_event,
            wanted=Retrier.WANTED,
            statuses=Retrier.WANTED_STATUSES,
            config=BACKGROUND,
        ),
        Consumer.for_events(
            bus,
            "stoker-monitor",
            [topics.LIFECYCLE],
            monitor.on_event,
            wanted=Monitor.WANTED,
            statuses=STOP_STATUSES,
            config=BACKGROUND,
        ),
    ]
    if not any(record.topic in TERMINAL_TOPICS for record in batch.records):
        # Most batches end no job: the notifier and the pipelines service (and their
        # tables' checks) stay closed.
        await consume(batch, consumers, deadline)
        await _send_stops(monitor, deadline)
        return batch.response()
    async with notifier_for(rt, bus, notify) as notifier, opened_pipeline_service(rt) as pipelines:
        consumers.append(
            Consumer.for_events(
                bus, CONSUMER_GROUP, TERMINAL_TOPICS, notifier.handle, config=BACKGROUND
            )
        )
        # A step job's end advances its pipeline execution (the next steps' jobs go on the
        # stream to the launcher); the outcome topics are the notifier's.
        consumers.append(pipelines.consumer(bus))
        await consume(batch, consumers, deadline)
        await _send_stops(monitor, deadline)
        try:
            await _send_pending(notifier, deadline)
        except Exception as exc:  # the entries stay pending: the sweep sends them
            log.error("sending notifications failed; the sweep retries", error=repr(exc))
    return batch.response()


async def sweep(rt: Runtime, deadline: Deadline, notify: NotifySettings) -> dict[str, Any]:
    async with notifier_for(rt, rt.bus, notify) as notifier:
        await _send_pending(notifier, deadline)
        return {"sent": notifier.sent_messages, "failed": notifier.failed_messages}


@asynccontextmanager
async def notifier_for(
    rt: Runtime, publisher: Publisher, notify: NotifySettings
) -> AsyncIterator[Notifier]:
    """A Notifier over the ledger table and the configured channels, closed after use."""
    async with AsyncExitStack() as stack:
        ledger = build_ledger(rt.settings, notify)
        await ledger.start()
        stack.push_async_callback(ledger.close)
        channels = build_channels(rt.settings, notify, rt.clock)
        for channel in channels.values():
            stack.push_async_callback(channel.close)
        fallback = notify.file_path or Path(rt.settings.data_dir) / "notifications.jsonl"
        yield Notifier(
            ledger=ledger,
            store=rt.store,
            publisher=publisher,
            channels=channels,
            settings=notify,
            fallback_file=str(fallback),
            clock=rt.clock,
        )


async def _send_stops(monitor: Monitor, deadline: Deadline) -> None:
    # A stop not sent now is sent by the monitor's sweep: it follows every Stopping job.
    try:
        if await within(monitor.poll_once(), deadline) is None:
            log.warning("stop requests not sent in time; the monitor's sweep sends them")
    except Exception as exc:
        log.error("sending stop requests failed; the monitor's sweep sends them", error=repr(exc))


async def _send_pending(notifier: Notifier, deadline: Deadline) -> None:
    # What is not sent now stays pending in the ledger; the sweep sends it, same message id.
    await notifier.flush_once()
    if await within(_idle(notifier), deadline) is None:
        log.warning("notifications still sending at the deadline; the sweep resends them")


async def _idle(notifier: Notifier) -> bool:
    await notifier.wait_idle()
    return True
