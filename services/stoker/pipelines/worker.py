"""The pipeline engine as a service: step jobs' ends from the job topics, retry times from the
store, and a relay for execution events a crashed writer left in the outbox.

A step job's end is announced by the lifecycle on `stoker.jobs.completed | failed |
stopped`. A completion recorded before the backend described the job (`details_pending`)
waits for the `stoker.job.described.v1` that follows it, so downstream steps read the job's
model artifacts.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import structlog

from stoker.core import topics
from stoker.core.clock import Clock
from stoker.core.events import (
    CloudEvent,
    EventData,
    JobCompleted,
    JobDescribed,
    JobFailed,
    JobStopped,
)
from stoker.core.job import JobStatus
from stoker.core.pipelines.records import ExecutionNotFound
from stoker.core.waiting import stop_requested
from stoker.pipelines.engine import PipelineEngine, job_input
from stoker.ports.bus import BusRecord, Publisher
from stoker.ports.pipelines import PipelineStore

log = structlog.get_logger("stoker.pipelines")

OUTCOME_TOPICS = (topics.COMPLETED, topics.FAILED, topics.STOPPED)
WANTED: tuple[type[EventData], ...] = (JobCompleted, JobFailed, JobStopped, JobDescribed)


def step_properties(data: JobCompleted | JobDescribed) -> dict[str, Any]:
    """What `Get Steps.<step>...` reads of a training step, in DescribeTrainingJob's shape,
    as far as the lifecycle reports it."""
    properties: dict[str, Any] = {"TrainingJobStatus": "Completed"}
    if data.training_job_name is not None:
        properties["TrainingJobName"] = data.training_job_name
    if data.model_artifacts is not None:
        properties["ModelArtifacts"] = {"S3ModelArtifacts": data.model_artifacts}
    if data.billable_seconds is not None:
        properties["BillableTimeInSeconds"] = data.billable_seconds
    return properties


class PipelineWorker:
    def __init__(
        self,
        engine: PipelineEngine,
        store: PipelineStore,
        publisher: Publisher,
        clock: Clock,
        *,
        timer_interval_s: float = 0.5,
        relay_grace: timedelta = timedelta(seconds=2),
    ) -> None:
        self._engine = engine
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._timer_interval_s = timer_interval_s
        self._relay_grace = relay_grace

    async def recover(self) -> int:
        """At start: start again the jobs of steps that running executions say are running
        (a job that exists is left alone), for a crash between a save and its starts.
        Returns how many steps were checked."""
        checked = 0
        for execution_id in await self._store.running_executions():
            checked += await self._engine.recover(execution_id)
        return checked

    async def on_event(self, event: CloudEvent, _record: BusRecord) -> None:
        """Handler of the job outcome topics."""
        routed = self.route(event.data)
        if routed is None:
            return
        try:
            await self._engine.handle(*routed)
        except ExecutionNotFound:
            # A job whose id only looks like a step's (`a.b.1`, submitted by hand).
            log.debug("job end of no pipeline execution", job_id=routed[0])

    @staticmethod
    def route(data: EventData) -> tuple[str, Any] | None:
        # A completion recorded before the job was described waits for its JobDescribed.
        completed = (isinstance(data, JobCompleted) and not data.details_pending) or (
            isinstance(data, JobDescribed) and data.status is JobStatus.COMPLETED
        )
        if isinstance(data, JobCompleted | JobDescribed):
            if not completed:
                return None
            return job_input(data.job_id, "Completed", properties=step_properties(data))
        if isinstance(data, JobFailed):
            return job_input(
                data.job_id,
                "Failed",
                failure_reason=str(data.failure_reason),
                failure_code=data.failure_code,
            )
        if isinstance(data, JobStopped):
            return job_input(data.job_id, "Stopped")
        return None

    async def run_timers(self, stop: asyncio.Event) -> None:
        """Start the retries whose time has come, until `stop`."""
        while not stop.is_set():
            try:
                await self._engine.fire_due_timers()
            except Exception as exc:  # the next pass tries again; nothing is lost
                log.warning("pipeline timer pass failed", error=str(exc))
            if await stop_requested(stop, self._timer_interval_s):
                return

    async def relay_once(self) -> int:
        """Publish outbox events older than the grace period (their writer died before
        publishing them); returns how many."""
        cutoff = self._clock.now() - self._relay_grace
        entries = [e for e in await self._store.pending_outbox() if e.event.time <= cutoff]
        for entry in entries:
            await self._publisher.publish(entry.topic, entry.event)
        if entries:
            await self._store.mark_published([e.entry_id for e in entries])
        return len(entries)

    async def run_relay(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.relay_once()
            except Exception as exc:
                log.warning("pipeline outbox relay pass failed", error=str(exc))
            if await stop_requested(stop, self._timer_interval_s):
                return
