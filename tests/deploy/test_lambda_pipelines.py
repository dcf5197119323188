"""The pipelines service on Lambda, one handler call at a time as AWS would make them: a
two-step pipeline's execution on DynamoDB Local (job table, its stream, the pipeline table),
its step jobs launched by the launch function on SageMaker (moto), their ends applied by
the monitor function and handed to the pipelines consumer by the react function; and the
pipelines function's sweep, which starts a schedule's tick once however often it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stoker.app.aws_lambda import monitor, pipelines, react
from stoker.app.aws_lambda.host import LambdaHost
from stoker.app.pipelines import build_pipeline_store, pipeline_operations
from stoker.app.runtime import Runtime
from stoker.core import topics
from stoker.core.events import CloudEvent, JobFailed
from stoker.lifecycle.jobs import JobService
from stoker.notifier.config import NotifySettings
from stoker.pipelines.operations import PipelineOperations
from tests.deploy.functions import LambdaFunctions
from tests.deploy.support import StreamReader, scheduled, state_change, training_request
from tests.unit.pipelines.definitions import pipeline, training

pytestmark = pytest.mark.integration

TEAM = "search"
TWO_STEPS = json.dumps(
    pipeline(
        training("Prepare", arguments=training_request("prepare")),
        training("Train", depends_on=["Prepare"], arguments=training_request("train")),
    )
)


async def with_operations(rt: Runtime, work: Callable[[PipelineOperations], Any]) -> Any:
    """`work` with the pipeline operations the API would serve, over the pipeline table."""
    store = build_pipeline_store(rt.settings)
    await store.start()
    try:
        ops = pipeline_operations(rt, store, JobService(rt.transitioner(), rt.clock))
        return await work(ops)
    finally:
        await store.close()


class Stack(LambdaFunctions):
    """The functions, the pipelines' sweep among them."""

    def __init__(self, hosts: Callable[..., LambdaHost], notify: NotifySettings) -> None:
        super().__init__(hosts, notify)
        self.pipelines = hosts(with_backend=False)

    def ops(self, work: Callable[[PipelineOperations], Any]) -> Any:
        return self.api.run(lambda rt: with_operations(rt, work))

    def execution(self, execution_id: str) -> Any:
        return self.ops(lambda ops: ops.get_execution(execution_id, team=TEAM)).state

    def complete(self, job_id: str) -> None:
        job = self.api.run(lambda rt: rt.store.get(job_id))
        name = job.details["training_job_name"]
        for status in ("InProgress", "Completed"):
            applied = monitor.handle(self.monitor, state_change(name, status, job_id), None)
            assert applied == {"applied": 1}


@pytest.fixture
def aws(hosts: Callable[..., LambdaHost], notify: NotifySettings) -> Stack:
    return Stack(hosts, notify)


def test_an_execution_runs_its_steps_through_the_stream_functions(
    aws: Stack, stream: Callable[[], StreamReader], sagemaker: Any
) -> None:
    """Start (API) -> Prepare's job on the stream -> launcher -> SageMaker's Completed event
    -> JobCompleted on the stream -> the react function's pipelines consumer starts Train's
    job -> launcher -> Completed -> the execution succeeds. A redelivered batch changes
    nothing."""
    aws.ops(lambda ops: ops.put_pipeline("chain", TWO_STEPS, team=TEAM))
    started = aws.ops(lambda ops: ops.start_execution("chain", {}, team=TEAM, owner="alice"))
    execution_id = started.execution_id
    reader = stream()

    aws.deliver_cleanly(reader)
    state = aws.execution(execution_id)
    prepare_job = state.steps["Prepare"].job_id
    assert aws.api.run(lambda rt: rt.store.get(prepare_job)).status.value == "Launched"
    assert state.steps["Train"].job_id is None

    aws.complete(prepare_job)
    records = reader.new_records()
    react_batch = reader.batch_for("ReactFunction", records)
    outcome = react.handle(aws.react, react_batch, None, notify=aws.notify)
    assert outcome == {"batchItemFailures": []}
    state = aws.execution(execution_id)
    assert state.steps["Prepare"].status.value == "Succeeded"
    train_job = state.steps["Train"].job_id
    assert train_job is not None
    # Lambda may deliver a batch again: Train's job is not submitted twice.
    assert react.handle(aws.react, react_batch, None, notify=aws.notify) == outcome
    assert aws.execution(execution_id).steps["Train"].attempt == 1

    aws.deliver_cleanly(reader)
    launched = aws.api.run(lambda rt: rt.store.get(train_job))
    assert launched.status.value == "Launched"
    described = sagemaker.describe_training_job(
        TrainingJobName=launched.details["training_job_name"]
    )
    assert described["ResourceConfig"]["InstanceType"] == "ml.m5.large"

    aws.complete(train_job)
    aws.deliver_cleanly(reader)
    assert str(aws.execution(execution_id).status) == "Succeeded"


def test_a_step_retry_that_came_due_is_started_by_the_sweep(
    aws: Stack, stream: Callable[[], StreamReader]
) -> None:
    """A step job fails with a capacity error its retry policy covers: the react function
    schedules the retry, and the pipelines sweep starts attempt 2's job once it is due.

    moto's training jobs always complete, so the failure the lifecycle would announce is
    published the same way (an event item on the failed topic)."""
    flaky = training(
        "Flaky",
        arguments=training_request("flaky"),
        RetryPolicies=[
            {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 0, "MaxAttempts": 3}
        ],
    )
    aws.ops(lambda ops: ops.put_pipeline("flaky", json.dumps(pipeline(flaky)), team=TEAM))
    started = aws.ops(lambda ops: ops.start_execution("flaky", {}, team=TEAM, owner="alice"))
    reader = stream()
    aws.deliver_cleanly(reader)
    first_job = aws.execution(started.execution_id).steps["Flaky"].job_id

    failed = JobFailed(
        job_id=first_job,
        owner="alice",
        attempts=1,
        ended_at=datetime.now(UTC),
        failure_reason="CapacityError: Unable to provision requested ML compute capacity.",
        failure_code="CapacityError",
    )
    event = CloudEvent.wrap(failed, time=failed.ended_at)
    aws.monitor.run(lambda rt: rt.bus.publish(topics.FAILED, event))
    aws.deliver_cleanly(reader)
    waiting = aws.execution(started.execution_id).steps["Flaky"]
    assert (waiting.status.value, waiting.attempt) == ("RetryScheduled", 1)

    swept = pipelines.handle(aws.pipelines, scheduled(), None)
    assert swept["retries_fired"] == 1
    retried = aws.execution(started.execution_id).steps["Flaky"]
    assert (retried.status.value, retried.attempt) == ("Executing", 2)
    assert retried.job_id not in (None, first_job)
    aws.deliver_cleanly(reader)
    assert aws.api.run(lambda rt: rt.store.get(retried.job_id)).status.value == "Launched"
    assert pipelines.handle(aws.pipelines, scheduled(), None)["retries_fired"] == 0


def test_the_sweep_starts_a_schedule_tick_once(aws: Stack) -> None:
    aws.ops(lambda ops: ops.put_pipeline("chain", TWO_STEPS, team=TEAM))
    start_date = datetime.now(UTC) - timedelta(minutes=5)
    aws.ops(
        lambda ops: ops.put_schedule(
            "every-minute", "chain", "rate(1 minute)", team=TEAM, start_date=start_date
        )
    )
    swept = pipelines.handle(aws.pipelines, scheduled(), None)
    assert swept["scheduled_started"] == 1
    assert swept["retries_fired"] == 0
    # Each step the running execution says is running is checked again (its job exists).
    assert swept["steps_recovered"] == 1
    again = pipelines.handle(aws.pipelines, scheduled(), None)
    assert again["scheduled_started"] == 0
    executions = aws.ops(lambda ops: ops.list_executions("chain", team=TEAM))
    assert [e.state.identity.schedule for e in executions] == ["every-minute"]


def test_the_pipelines_function_takes_only_scheduled_events(aws: Stack) -> None:
    with pytest.raises(ValueError, match="event: expected a scheduled event"):
        pipelines.handle(aws.pipelines, {"Records": []}, None)
