"""The monitor on Lambda: EventBridge's "SageMaker Training Job State Change" events, and a
scheduled sweep for anything those events missed.

A state change is applied by a `Monitor` made for the invocation. The long-running monitor
knows which training job belongs to which job from the Launched events it consumed; here
another invocation consumed them, so the handler reads the job from the store and hands the
monitor the status change it would have seen (`follow`). The job is found from the training
job's `stoker:job-id` tag (the launcher tags every training job), or, when the event carries
no tags, from the name itself (`<job id>-<attempt>`), checked by deriving the name again.

Sweep: `Monitor.recover` follows every job the store says is running and one
`Monitor.poll_once` pass lists what changed (its first pass reaches back a day) and sends
stops still owed. SageMaker's API is not billed per call; the sweep's cost is its run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from stoker.app.aws_lambda.host import Deadline, LambdaContext, LambdaHost, within
from stoker.app.aws_lambda.schedule import is_scheduled_event, unexpected_event
from stoker.app.runtime import Runtime
from stoker.core import topics
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobRecord, JobStatus
from stoker.core.naming import JOB_ID_TAG, training_job_name
from stoker.lifecycle.monitor import Monitor, MonitorConfig
from stoker.lifecycle.state_changes import DETAIL_TYPE, decode_state_change
from stoker.ports.bus import BusRecord

log = structlog.get_logger("stoker.app.aws_lambda.monitor")

HOST = LambdaHost(with_backend=True)


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point (`stoker.app.aws_lambda.monitor.handler`)."""
    return handle(HOST, event, context)


def handle(
    host: LambdaHost, event: Mapping[str, Any], context: LambdaContext | None
) -> dict[str, Any]:
    deadline = Deadline.of(context, host.lambda_settings.deadline_margin_s)
    if event.get("detail-type") == DETAIL_TYPE:
        return host.run(lambda rt: on_state_change(rt, event, deadline))
    if is_scheduled_event(event):
        return host.run(lambda rt: sweep(rt, deadline))
    raise unexpected_event(event, f"a {DETAIL_TYPE!r} event or a scheduled event")


def monitor_for(rt: Runtime) -> Monitor:
    # Each invocation's monitor lives for one event or one sweep: ends it records are
    # described first, since nothing would be left to describe them afterwards. Bursts reach
    # the Lambda as state-change events, which carry their descriptions.
    config = MonitorConfig(
        poll_interval_s=rt.settings.poll_interval_s,
        api_rate_per_s=rt.settings.monitor_api_rate_per_s,
        describe_wait_s=None,
    )
    return Monitor(rt.transitioner(), rt.backend, rt.clock, config)


async def on_state_change(
    rt: Runtime, event: Mapping[str, Any], deadline: Deadline
) -> dict[str, Any]:
    raw = orjson.dumps(event)
    change = decode_state_change(raw)  # EventRejected names the bad field
    bound = log.bind(training_job_name=change.training_job_name, status=change.status.value)
    job_id = job_id_of(event.get("detail") or {}, change.training_job_name)
    if job_id is None:
        bound.info("not a stoker training job; ignored")
        return {"applied": 0}
    try:
        job = await rt.store.get(job_id)
    except JobNotFound:
        bound.info("no such job in the store; ignored", job_id=job_id)
        return {"applied": 0}
    monitor = monitor_for(rt)
    if not await follow(monitor, job):
        bound.info("job is not running; nothing to apply", job_status=job.status.value)
        return {"applied": 0}
    applied = await within(
        monitor.observe(change.training_job_name, change.status, description=change.description),
        deadline,
    )
    if applied is None:
        # Raised, not swallowed: Lambda retries the event, then sends it to the DLQ.
        raise TimeoutError(f"state change of {change.training_job_name} not applied in time")
    return {"applied": applied}


async def sweep(rt: Runtime, deadline: Deadline) -> dict[str, Any]:
    monitor = monitor_for(rt)
    await monitor.recover()
    applied = await within(monitor.poll_once(), deadline)
    if applied is None:
        log.warning("monitor sweep ran out of time; the next sweep lists the same window")
        return {"followed": monitor.followed, "applied": 0}
    return {"followed": monitor.followed, "applied": applied}


def job_id_of(detail: Mapping[str, Any], name: str) -> str | None:
    """The stoker job behind training job `name`: its tag, else its readable name."""
    tags = detail.get("Tags")
    if isinstance(tags, dict):
        tagged = tags.get(JOB_ID_TAG)
        if isinstance(tagged, str) and tagged:
            return tagged
    job_id, _, attempt = name.rpartition("-")
    if "--" in name or not job_id or not attempt.isdigit():
        return None
    # Only a name the launcher would give that attempt: never guess at a foreign one.
    return job_id if training_job_name(job_id, int(attempt)) == name else None


async def follow(monitor: Monitor, job: JobRecord) -> bool:
    """Make a monitor made for this invocation follow `job`'s current attempt, as if it had
    consumed the job's Launched (or Stopping) event itself; False if the job is not running."""
    if job.status in (JobStatus.LAUNCHED, JobStatus.IN_PROGRESS):
        to_status = JobStatus.LAUNCHED
    elif job.status is JobStatus.STOPPING:
        to_status = JobStatus.STOPPING
    else:
        return False
    data = JobStatusChanged(
        job_id=job.job_id,
        owner=job.owner,
        version=job.version,
        from_status=None,
        to_status=to_status,
        attempt=job.attempt,
        reason="followed from the store",
    )
    event = CloudEvent.wrap(data, time=job.updated_at)
    record = BusRecord(
        topic=topics.LIFECYCLE, partition=0, offset=0, key=job.job_id, value=event.to_json()
    )
    await monitor.on_event(event, record)
    return True
