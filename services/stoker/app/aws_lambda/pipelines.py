"""The pipelines service on Lambda: what `stoker run pipelines` does in a loop, one pass per
scheduled invocation.

Step jobs' ends come from the job table's stream, whose two readers per shard (the launcher
and the react function) are taken: the react function reads the job outcome topics anyway,
so it also hands them to the pipelines consumer (`stoker-pipelines`, see `react.py`).

Sweep (EventBridge schedule), in this order, each bounded by the invocation's deadline:
retries whose time has come (`fire_due_timers`), schedule ticks due (`Scheduler.run_once`:
two sweeps at once start one execution per tick, as two schedulers do), the outbox relay
(execution events a writer that died left unpublished) and `recover` (a step job a writer
that died between its save and the job's submission never submitted). Whatever is cut off
by the deadline is done by the next sweep: every step is idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from stoker.app.aws_lambda.host import Deadline, LambdaContext, LambdaHost, within
from stoker.app.aws_lambda.schedule import is_scheduled_event, unexpected_event
from stoker.app.pipelines import opened_pipeline_service
from stoker.app.runtime import Runtime

log = structlog.get_logger("stoker.app.aws_lambda.pipelines")

HOST = LambdaHost(with_backend=False)


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point (`stoker.app.aws_lambda.pipelines.handler`)."""
    return handle(HOST, event, context)


def handle(
    host: LambdaHost, event: Mapping[str, Any], context: LambdaContext | None
) -> dict[str, Any]:
    deadline = Deadline.of(context, host.lambda_settings.deadline_margin_s)
    if is_scheduled_event(event):
        return host.run(lambda rt: sweep(rt, deadline))
    raise unexpected_event(event, "a scheduled event")


async def sweep(rt: Runtime, deadline: Deadline) -> dict[str, Any]:
    done: dict[str, Any] = {}
    async with opened_pipeline_service(rt) as service:
        passes: dict[str, Callable[[], Awaitable[int]]] = {
            "retries_fired": service.engine.fire_due_timers,
            "scheduled_started": service.scheduler.run_once,
            "events_relayed": service.worker.relay_once,
            "steps_recovered": service.worker.recover,
        }
        for name, work in passes.items():
            result = await within(work(), deadline)
            if result is None:
                log.warning("pipelines sweep ran out of time; the next sweep goes on", at=name)
                break
            done[name] = result
    return done
