"""The pipelines service's parts on in-memory fakes: a step becomes a job of the lifecycle,
the job's end on the job topics moves the execution on, a completion waits for the job's
description, a processing step runs as a processing job, the relay publishes what a writer
left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.adapters.training.request_shape import BotocoreRequestValidator
from stoker.app.pipelines import LifecycleStepJobs
from stoker.bus.consumer import Consumer
from stoker.core import topics
from stoker.core.clock import FakeClock
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent, EventData, JobCompleted, JobDescribed, JobFailed
from stoker.core.job import JobStatus
from stoker.core.pipelines.effects import StartStep
from stoker.core.pipelines.records import ExecutionNotFound
from stoker.core.pipelines.state import ExecutionState, ExecutionStatus
from stoker.lifecycle.jobs import JobService, SubmissionRules
from stoker.lifecycle.transitions import Transitioner
from stoker.pipelines.engine import PipelineEngine
from stoker.pipelines.worker import OUTCOME_TOPICS, WANTED, PipelineWorker
from stoker.ports.bus import BusRecord
from tests.support.waiting import poll_until
from tests.unit.pipelines.definitions import get, pipeline, processing, training, training_args

RULES = SubmissionRules(validator=BotocoreRequestValidator())
"""As the service checks step jobs: against botocore's CreateTrainingJob model."""


@dataclass
class Service:
    clock: FakeClock
    bus: MemoryBus
    jobs: MemoryJobStore
    store: MemoryPipelineStore
    engine: PipelineEngine
    worker: PipelineWorker

    async def put(self, doc: dict[str, Any]) -> None:
        await self.store.put_pipeline(
            "demo",
            team="search",
            definition=orjson.dumps(doc).decode(),
            description=None,
            now=self.clock.now(),
        )

    async def announce(self, topic: str, data: EventData) -> None:
        await self.bus.publish(topic, CloudEvent.wrap(data, time=self.clock.now()))

    async def job_exists(self, job_id: str) -> bool:
        try:
            await self.jobs.get(job_id)
        except JobNotFound:
            return False
        return True


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    clock, bus, jobs, store = FakeClock(), MemoryBus(), MemoryJobStore(), MemoryPipelineStore()
    await bus.start()
    await jobs.start()
    engine = PipelineEngine(
        store,
        LifecycleStepJobs(JobService(Transitioner(jobs, bus), clock, rules=RULES)),
        bus,
        clock,
    )
    worker = PipelineWorker(engine, store, bus, clock)
    consumer = Consumer.for_events(
        bus, "stoker-pipelines", list(OUTCOME_TOPICS), worker.on_event, wanted=WANTED
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    yield Service(clock, bus, jobs, store, engine, worker)
    stop.set()
    await task
    await bus.close()


def completed(job_id: str, **fields: Any) -> JobCompleted:
    return JobCompleted(
        job_id=job_id, owner="ana", attempts=1, ended_at=FakeClock().now(), **fields
    )


async def test_a_step_job_end_on_the_bus_starts_the_next_step_with_its_artifacts(
    service: Service,
) -> None:
    reads_model = training_args(get("Steps.A.ModelArtifacts.S3ModelArtifacts"))
    await service.put(pipeline(training("A"), training("B", arguments=reads_model)))
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    job = await service.jobs.get("e1.A.1")
    assert (job.status, job.owner, job.team) == (JobStatus.NEW, "ana", "search")
    assert job.spec["training"]["RoleArn"].startswith("arn:aws:iam::")

    # A completion recorded before the job was described waits for the description.
    await service.announce(topics.COMPLETED, completed("e1.A.1", details_pending=True))
    await service.announce(
        topics.COMPLETED,
        JobDescribed(
            job_id="e1.A.1",
            owner="ana",
            status=JobStatus.COMPLETED,
            attempts=1,
            ended_at=service.clock.now(),
            model_artifacts="s3://b/a/model.tar.gz",
        ),
    )
    await poll_until(lambda: service.job_exists("e1.B.1"), 5.0, 0.005, what="step B's job")
    b = await service.jobs.get("e1.B.1")
    assert b.spec["training"]["AlgorithmSpecification"]["TrainingImage"] == "s3://b/a/model.tar.gz"


async def test_a_failed_job_fails_the_execution(service: Service) -> None:
    await service.put(pipeline(training("A")))
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    await service.announce(
        topics.FAILED,
        JobFailed(
            job_id="e1.A.1",
            owner="ana",
            attempts=1,
            ended_at=service.clock.now(),
            failure_reason="AlgorithmError: boom",
        ),
    )

    async def ended() -> bool:
        return (await service.store.get_execution("e1")).status is ExecutionStatus.FAILED

    await poll_until(ended, 5.0, 0.005, what="the execution's end")
    assert (
        await service.store.get_execution("e1")
    ).state.failure_reason == "step 'A' failed: AlgorithmError: boom"


async def test_a_processing_step_runs_as_a_processing_job_and_reports_its_outputs(
    service: Service,
) -> None:
    """The step's request becomes a `kind: processing` job; its end gives the step
    DescribeProcessingJob's properties, which the next step reads."""
    reads_output = training_args(
        get("Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"),
        HyperParameters={"job": get("Steps.Prep.ProcessingJobName")},
    )
    await service.put(pipeline(processing("Prep"), training("Train", arguments=reads_output)))
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    prep = await service.jobs.get("e1.Prep.1")
    assert prep.spec["kind"] == "processing"
    assert prep.spec["processing"]["AppSpecification"]["ImageUri"].endswith("/proc:1")
    assert "training" not in prep.spec

    await service.announce(
        topics.COMPLETED, completed("e1.Prep.1", training_job_name="e1-Prep-1-a1")
    )
    await poll_until(lambda: service.job_exists("e1.Train.1"), 5.0, 0.005, what="Train's job")
    train = await service.jobs.get("e1.Train.1")
    assert train.spec["training"]["AlgorithmSpecification"]["TrainingImage"] == "s3://bucket/train"
    assert train.spec["training"]["HyperParameters"] == {"job": "e1-Prep-1-a1"}
    properties = (await service.store.get_execution("e1")).state.steps["Prep"].properties or {}
    assert properties["ProcessingJobStatus"] == "Completed"
    assert "TrainingJobStatus" not in properties


async def test_a_training_step_reports_its_request_as_describe_training_job_echoes_it(
    service: Service,
) -> None:
    """The SDK's NotebookJobStep properties read the request's own members
    (`NotebookJobOutputLocationPrefix` is `OutputDataConfig.S3OutputPath`)."""
    notebook = training_args(
        OutputDataConfig={"S3OutputPath": "s3://bucket/nb/demo/e1/Prep"},
        Environment={"SM_OUTPUT_NOTEBOOK_NAME": "prep.ipynb"},
    )
    reads_output = training_args(
        HyperParameters={
            "data": get("Steps.Prep.OutputDataConfig.S3OutputPath"),
            "notebook": get("Steps.Prep.Environment['SM_OUTPUT_NOTEBOOK_NAME']"),
        }
    )
    await service.put(
        pipeline(training("Prep", arguments=notebook), training("Next", arguments=reads_output))
    )
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    await service.announce(topics.COMPLETED, completed("e1.Prep.1"))
    await poll_until(lambda: service.job_exists("e1.Next.1"), 5.0, 0.005, what="Next's job")
    following = await service.jobs.get("e1.Next.1")
    assert following.spec["training"]["HyperParameters"] == {
        "data": "s3://bucket/nb/demo/e1/Prep",
        "notebook": "prep.ipynb",
    }
    properties = (await service.store.get_execution("e1")).state.steps["Prep"].properties or {}
    assert properties["TrainingJobStatus"] == "Completed"
    assert properties["RoleArn"] == notebook["RoleArn"]


async def test_a_bad_training_request_fails_the_step_naming_the_field(service: Service) -> None:
    args = training_args()
    args["ResourceConfig"]["InstanceCount"] = "two"
    await service.put(pipeline(training("A", arguments=args)))
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    final = await service.store.get_execution("e1")
    assert final.status is ExecutionStatus.FAILED
    assert "training.ResourceConfig.InstanceCount" in (final.state.failure_reason or "")


async def test_the_relay_publishes_events_a_writer_left_in_the_outbox(service: Service) -> None:
    """A writer that died between its save and its publish left its events in the outbox."""
    await service.put(pipeline(training("A")))
    await service.engine.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    left = CloudEvent.wrap(completed("e1.A.1"), time=service.clock.now())
    state = (await service.store.get_execution("e1")).state
    await service.store.save_execution(
        state, expected_version=1, outbox=[(topics.PIPELINE_EXECUTIONS, left)]
    )
    assert (
        await service.worker.relay_once() == 0
    )  # within the grace period: its writer may still publish
    service.clock.advance(3)
    assert await service.worker.relay_once() == 1
    assert await service.store.pending_outbox() == []


async def test_recover_starts_what_a_crashed_engine_saved_but_did_not_start(
    service: Service,
) -> None:
    """The execution says step A runs, but the engine died before making its job: the
    service's start makes it, once."""
    await service.put(pipeline(training("A")))
    lost = PipelineEngine(service.store, _NoJobs(), service.bus, service.clock)
    await lost.start_execution("demo", {}, team="search", owner="ana", execution_id="e1")
    assert not await service.job_exists("e1.A.1")
    assert await service.worker.recover() == 1
    assert await service.worker.recover() == 1
    job = await service.jobs.get("e1.A.1")
    assert job.status is JobStatus.NEW
    assert len((await service.jobs.list_jobs()).items) == 1


class _NoJobs:
    """Step jobs of an engine that died before each start reached the job store."""

    async def start(self, execution: ExecutionState, step: StartStep) -> None:
        del execution, step

    async def stop(self, job_id: str) -> None:
        del job_id


async def test_a_job_whose_id_only_looks_like_a_step_s_is_passed_over(service: Service) -> None:
    """`a.b.1` submitted by hand ends: no execution `a` exists, so the end is passed over
    instead of failing the handler (which would dead-letter it)."""
    assert PipelineWorker.route(completed("a.b.1")) is not None  # it parses as a step job
    event = CloudEvent.wrap(completed("a.b.1"), time=service.clock.now())
    await service.worker.on_event(event, BusRecord(topics.COMPLETED, 0, 0, "a.b.1", b""))
    with pytest.raises(ExecutionNotFound):
        await service.store.get_execution("a")
