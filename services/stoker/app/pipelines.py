"""The pipelines service's wiring: the pipeline store the settings name, step jobs as jobs of
the lifecycle, and the engine's loops."""

from __future__ import annotations

import asyncio

import structlog

from stoker.app.notifier import notify_submit_rules
from stoker.app.runtime import Runtime
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core.errors import JobNotFound
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
from stoker.ports.pipelines import PipelineStore, StepRefused
from stoker.settings import Settings, StoreKind

log = structlog.get_logger("stoker.pipelines")

PIPELINE_OWNER = "pipelines"
"""The owner of step jobs of an execution nobody started by hand (a schedule's tick)."""


class LifecycleStepJobs:
    """A step attempt is a job of the lifecycle whose id is the attempt's `job_id` and whose
    `training` is the step's resolved CreateTrainingJob request; the same id submitted again
    is the same job, so a repeated start creates nothing."""

    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    async def start(self, execution: ExecutionState, step: StartStep) -> None:
        if step.step_type is not StepType.TRAINING:
            raise StepRefused(
                f"{step.step_type} steps need processing jobs on the training backends, "
                "which stoker does not run yet"
            )
        training = {k: v for k, v in step.arguments.items() if k != "TrainingJobName"}
        identity = execution.identity
        try:
            spec = parse_spec({"job_id": step.job_id, "training": training})
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


def build_pipeline_store(settings: Settings) -> PipelineStore | None:
    """SQLite beside the job store; None where the job store is DynamoDB (a DynamoDB
    pipeline store is not built yet)."""
    if settings.store_kind is not StoreKind.SQLITE:
        return None
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
    return PipelineOperations(store, engine, rt.clock)


async def run_pipelines(rt: Runtime, stop: asyncio.Event) -> None:
    """Advance pipeline executions on their step jobs' ends and their retry times, and start
    executions at their schedules' ticks."""
    store = build_pipeline_store(rt.settings)
    if store is None:
        log.warning(
            "the pipelines service needs the SQLite store; a DynamoDB pipeline store is not "
            "built yet, so no pipeline runs here"
        )
        await stop.wait()
        return
    await store.start()
    try:
        service = JobService(
            rt.transitioner(),
            rt.clock,
            rules=rt.submission_rules(),
            notify_rules=notify_submit_rules(),
        )
        engine = PipelineEngine(
            store, LifecycleStepJobs(service), rt.bus, rt.clock, region=rt.settings.aws_region
        )
        worker = PipelineWorker(engine, store, rt.bus, rt.clock)
        await worker.recover()
        scheduler = Scheduler(store, engine, rt.clock)
        consumer = Consumer.for_events(
            rt.bus,
            "stoker-pipelines",
            list(OUTCOME_TOPICS),
            worker.on_event,
            wanted=WANTED,
            config=BACKGROUND,
        )
        await asyncio.gather(
            consumer.run(stop),
            worker.run_timers(stop),
            worker.run_relay(stop),
            scheduler.run(stop),
        )
    finally:
        await store.close()
