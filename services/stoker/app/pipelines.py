"""The pipelines service's wiring: the pipeline store the settings name, step jobs as jobs of
the lifecycle, and the engine's loops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from stoker.app.notifier import notify_submit_rules
from stoker.app.runtime import Runtime
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent
from stoker.core.job_kind import JobKind
from stoker.core.pipelines.definition import StepType
from stoker.core.pipelines.effects import StartStep
from stoker.core.pipelines.state import ExecutionState
from stoker.lifecycle.jobs import (
    InvalidJobSpec,
    JobAlreadyFinished,
    JobIdConflict,
    JobService,
    PolicyViolation,
    parse_spec,
)
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.operations import PipelineOperations
from stoker.pipelines.scheduler import Scheduler
from stoker.pipelines.worker import OUTCOME_TOPICS, WANTED, PipelineWorker
from stoker.ports.bus import EventBus
from stoker.ports.objects import ObjectReader
from stoker.ports.pipelines import PipelineStore, StepRefused
from stoker.settings import Settings, StoreKind

log = structlog.get_logger("stoker.pipelines")

PIPELINE_OWNER = "pipelines"
"""The owner of step jobs of an execution nobody started by hand (a schedule's tick)."""


class LifecycleStepJobs:
    """A step attempt is a job of the lifecycle whose id is the attempt's `job_id`: a
    Training step's resolved CreateTrainingJob request as a `training` job (a notebook step,
    the request the SDK's NotebookJobStep compiles, included), a Processing step's
    CreateProcessingJob request as a `processing` job. The same id submitted again is the
    same job, so a repeated start creates nothing."""

    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    async def start(self, execution: ExecutionState, step: StartStep) -> None:
        body = step_job_body(step)
        identity = execution.identity
        try:
            spec = parse_spec(body)
            await self._jobs.submit(
                spec, owner=identity.owner or PIPELINE_OWNER, team=identity.team
            )
        except (InvalidJobSpec, PolicyViolation, JobIdConflict) as exc:
            raise StepRefused(f"the step's job was refused: {exc}") from exc

    async def stop(self, job_id: str) -> None:
        try:
            await self._jobs.stop(job_id, "the pipeline execution was stopped")
        except (JobAlreadyFinished, JobNotFound):
            return


def step_job_body(step: StartStep) -> dict[str, Any]:
    """The job spec (unparsed) of a step attempt; StepRefused for a step that is no job.
    The request's own name member is left out: the launcher names each attempt."""
    if step.step_type is StepType.TRAINING:
        kind = JobKind.TRAINING
    elif step.step_type is StepType.PROCESSING:
        kind = JobKind.PROCESSING
    else:
        raise StepRefused(f"{step.step_type} steps do not run jobs")
    request = {k: v for k, v in step.arguments.items() if k != kind.name_field}
    if kind is JobKind.TRAINING:
        # No `kind` member: the spec stays the one stored before kinds existed, so a step
        # started again after an upgrade is the same job.
        return {"job_id": step.job_id, "training": request}
    return {"job_id": step.job_id, "kind": kind.value, kind.value: request}


def build_pipeline_store(settings: Settings) -> PipelineStore:
    """Beside the job store: SQLite in the data folder, or the `<prefix>-pipelines` table
    where the job store is DynamoDB."""
    if settings.store_kind is StoreKind.DYNAMODB:
        from stoker.adapters.store.dynamodb_pipelines import DynamoDbPipelineStore

        return DynamoDbPipelineStore(settings)
    from stoker.adapters.store.sqlite_pipelines import SqlitePipelineStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlitePipelineStore(settings.data_dir / "pipelines.sqlite3")


def pipeline_operations(rt: Runtime, store: PipelineStore, jobs: JobService) -> PipelineOperations:
    """What the API serves: pipelines in `store`, executions started (their first steps'
    jobs submitted through `jobs`) by an engine of the API's own; the pipelines service
    advances them from there."""
    engine = PipelineEngine(
        store, LifecycleStepJobs(jobs), rt.bus, rt.clock, region=rt.settings.aws_region
    )
    return PipelineOperations(store, engine, rt.clock, objects=definition_reader(rt.settings))


def definition_reader(settings: Settings) -> ObjectReader | None:
    """S3 for `PipelineDefinitionS3Location` (botocore finds the endpoint, e.g.
    AWS_ENDPOINT_URL_S3 for `stoker dev s3`, and credentials as every AWS client does); None
    without the `aws` extra, and such definitions are refused naming the field."""
    try:
        from stoker.adapters.aws import settings_config
        from stoker.adapters.objects.s3 import S3ObjectReader
    except ImportError:
        return None
    return S3ObjectReader(region=settings.aws_region, config=settings_config(settings))


@dataclass(frozen=True)
class PipelineService:
    """The pipelines service's parts over one started pipeline store."""

    engine: PipelineEngine
    worker: PipelineWorker
    scheduler: Scheduler

    def consumer(self, bus: EventBus) -> Consumer[CloudEvent]:
        """The step jobs' ends (`stoker-pipelines`) from `bus`'s job outcome topics."""
        return Consumer.for_events(
            bus,
            "stoker-pipelines",
            list(OUTCOME_TOPICS),
            self.worker.on_event,
            wanted=WANTED,
            config=BACKGROUND,
        )


def pipeline_service(rt: Runtime, store: PipelineStore) -> PipelineService:
    """Step jobs are submitted as the jobs API submits them (its rules and defaults)."""
    service = JobService(
        rt.transitioner(),
        rt.clock,
        rules=rt.submission_rules(),
        notify_rules=notify_submit_rules(),
    )
    engine = PipelineEngine(
        store, LifecycleStepJobs(service), rt.bus, rt.clock, region=rt.settings.aws_region
    )
    return PipelineService(
        engine, PipelineWorker(engine, store, rt.bus, rt.clock), Scheduler(store, engine, rt.clock)
    )


@asynccontextmanager
async def opened_pipeline_service(rt: Runtime) -> AsyncIterator[PipelineService]:
    """The service over the configured pipeline store, closed after use."""
    store = build_pipeline_store(rt.settings)
    await store.start()
    try:
        yield pipeline_service(rt, store)
    finally:
        await store.close()


async def run_pipelines(rt: Runtime, stop: asyncio.Event) -> None:
    """Advance pipeline executions on their step jobs' ends and their retry times, and start
    executions at their schedules' ticks."""
    async with opened_pipeline_service(rt) as service:
        await service.worker.recover()
        await asyncio.gather(
            service.consumer(rt.bus).run(stop),
            service.worker.run_timers(stop),
            service.worker.run_relay(stop),
            service.scheduler.run(stop),
        )
