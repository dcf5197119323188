"""The engine over the memory store: executions run end to end, every step is started once
even with two engines on one event, a crash between save and start is recovered, retries
fire from the store's timers, cached runs are reused across executions, stop stops jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from stoker.adapters.store.memory_pipelines import MemoryPipelineStore
from stoker.core.clock import FakeClock
from stoker.core.pipelines import ParameterError
from stoker.core.pipelines.records import ExecutionNotFound, PipelineNotFound
from stoker.core.pipelines.state import ExecutionStatus, StepStatus
from stoker.pipelines.engine import PipelineEngine, job_input
from tests.unit.pipelines.definitions import get, pipeline, training, training_args
from tests.unit.pipelines.fakes import Jobs, Published

CAPACITY = {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 30, "MaxAttempts": 3}


class Rig:
    def __init__(self) -> None:
        self.store = MemoryPipelineStore()
        self.jobs = Jobs()
        self.published = Published()
        self.clock = FakeClock()
        self.engine = self.new_engine()

    def new_engine(self) -> PipelineEngine:
        return PipelineEngine(self.store, self.jobs, self.published, self.clock)

    async def put(self, doc: dict[str, Any], *, name: str = "demo", team: str = "search") -> None:
        await self.store.put_pipeline(
            name,
            team=team,
            definition=orjson.dumps(doc).decode(),
            description=None,
            now=self.clock.now(),
        )

    async def end(self, job_id: str, status: str, **fields: Any) -> None:
        routed = job_input(job_id, status, **fields)
        assert routed is not None
        await self.engine.handle(*routed)


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_an_execution_runs_to_the_end_and_announces_it(rig: Rig) -> None:
    await rig.put(
        pipeline(
            training("A"),
            training("B", arguments=training_args(get("Steps.A.ModelArtifacts.S3ModelArtifacts"))),
        )
    )
    stored = await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    assert list(rig.jobs.created) == ["e1.A.1"]
    await rig.end(
        "e1.A.1",
        "Completed",
        properties={"ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}},
    )
    assert (
        rig.jobs.created["e1.B.1"].arguments["AlgorithmSpecification"]["TrainingImage"]
        == "s3://b/m.tar.gz"
    )
    await rig.end("e1.B.1", "Completed")
    final = await rig.store.get_execution(stored.execution_id)
    assert final.status is ExecutionStatus.SUCCEEDED
    assert rig.published.types() == [
        "execution-started",
        "step-ready",
        "step-started",
        "step-succeeded",
        "step-ready",
        "step-started",
        "step-succeeded",
        "execution-succeeded",
    ]
    assert {e.subject for e in rig.published.events} == {"e1"}
    assert await rig.store.pending_outbox() == []  # published, so marked


async def test_two_engines_handling_one_outcome_start_the_next_step_once(rig: Rig) -> None:
    await rig.put(pipeline(training("A"), training("B", depends_on=["A"])))
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    other = rig.new_engine()
    routed = job_input("e1.A.1", "Completed")
    assert routed is not None
    await asyncio.gather(
        rig.engine.handle(*routed), other.handle(*routed), rig.engine.handle(*routed)
    )
    assert rig.jobs.calls.count("e1.B.1") == 1
    assert rig.published.types().count("step-started") == 2


async def test_a_start_lost_in_a_crash_is_made_by_recover(rig: Rig) -> None:
    """The save landed, the job start did not: recover starts it, and only once however often
    it runs."""
    await rig.put(pipeline(training("A")))
    rig.jobs.fail_next_start = True
    with pytest.raises(ConnectionError):
        await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    stored = await rig.store.get_execution("e1")
    assert stored.state.steps["A"].status is StepStatus.EXECUTING
    assert rig.jobs.created == {}
    restarted = rig.new_engine()
    assert await restarted.recover("e1") == 1
    assert await restarted.recover("e1") == 1
    assert list(rig.jobs.created) == ["e1.A.1"]


async def test_a_capacity_failure_is_retried_when_its_timer_is_due(rig: Rig) -> None:
    await rig.put(pipeline(training("A", RetryPolicies=[CAPACITY])))
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    await rig.end(
        "e1.A.1",
        "Failed",
        failure_reason="CapacityError: Unable to provision requested ML compute capacity.",
    )
    assert await rig.engine.fire_due_timers() == 0
    rig.clock.advance(30)
    assert await rig.engine.fire_due_timers() == 1
    assert list(rig.jobs.created) == ["e1.A.1", "e1.A.2"]
    await rig.end("e1.A.2", "Failed", failure_reason="AlgorithmError: loss is NaN")
    final = await rig.store.get_execution("e1")
    assert final.status is ExecutionStatus.FAILED
    assert final.state.failure_reason == "step 'A' failed: AlgorithmError: loss is NaN"


async def test_a_later_execution_reuses_a_cached_step_run(rig: Rig) -> None:
    cached = training("Prep", CacheConfig={"Enabled": True, "ExpireAfter": "P1D"})
    await rig.put(
        pipeline(
            cached,
            training(
                "Train", arguments=training_args(get("Steps.Prep.ModelArtifacts.S3ModelArtifacts"))
            ),
        )
    )
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    await rig.end(
        "e1.Prep.1", "Completed", properties={"ModelArtifacts": {"S3ModelArtifacts": "s3://b/prep"}}
    )
    rig.clock.advance(3600)
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e2")
    assert "e2.Prep.1" not in rig.jobs.created
    assert (
        rig.jobs.created["e2.Train.1"].arguments["AlgorithmSpecification"]["TrainingImage"]
        == "s3://b/prep"
    )
    second = await rig.store.get_execution("e2")
    assert second.state.steps["Prep"].cache_hit_of == "e1"


async def test_stop_stops_the_running_jobs(rig: Rig) -> None:
    await rig.put(pipeline(training("A"), training("B")))
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    stopping = await rig.engine.stop_execution("e1", team="search")
    assert stopping.status is ExecutionStatus.STOPPING
    assert sorted(rig.jobs.stopped) == ["e1.A.1", "e1.B.1"]
    await rig.end("e1.A.1", "Stopped")
    await rig.end("e1.B.1", "Completed")
    assert (await rig.store.get_execution("e1")).status is ExecutionStatus.STOPPED


async def test_bad_parameters_are_refused_before_anything_is_stored(rig: Rig) -> None:
    await rig.put(pipeline(training("A"), parameters=[{"Name": "Epochs", "Type": "Integer"}]))
    with pytest.raises(ParameterError, match=r"Parameters\.Epochs: required"):
        await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    with pytest.raises(ParameterError, match="expected a value of type Integer"):
        await rig.engine.start_execution("demo", {"Epochs": "x"}, team="search", execution_id="e1")
    with pytest.raises(ExecutionNotFound):
        await rig.store.get_execution("e1")
    assert rig.jobs.calls == []


async def test_another_team_cannot_start_or_stop_an_execution(rig: Rig) -> None:
    await rig.put(pipeline(training("A")))
    with pytest.raises(PipelineNotFound):
        await rig.engine.start_execution("demo", {}, team="ads")
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    with pytest.raises(ExecutionNotFound):
        await rig.engine.stop_execution("e1", team="ads")


async def test_a_tick_execution_id_starts_one_execution(rig: Rig) -> None:
    await rig.put(pipeline(training("A")))
    first = await rig.engine.start_execution(
        "demo", {}, team="search", execution_id="sched-1", schedule="nightly"
    )
    second = await rig.engine.start_execution(
        "demo", {}, team="search", execution_id="sched-1", schedule="nightly"
    )
    assert first == second
    assert rig.jobs.calls == ["sched-1.A.1"]


async def test_an_update_of_the_pipeline_leaves_a_running_execution_alone(rig: Rig) -> None:
    await rig.put(pipeline(training("A"), training("B", depends_on=["A"])))
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    await rig.put(pipeline(training("A"), training("C", depends_on=["A"])))
    await rig.end("e1.A.1", "Completed")
    assert "e1.B.1" in rig.jobs.created
    assert "e1.C.1" not in rig.jobs.created


def test_only_step_jobs_are_routed() -> None:
    assert job_input("churn-model-7", "Completed") is None
    assert job_input("e1.A.x", "Completed") is None
    routed = job_input(
        "e1.Train.2", "Failed", failure_reason="x", failure_code="ResourceLimitExceeded"
    )
    assert routed is not None
    execution_id, event = routed
    assert execution_id == "e1"
    assert getattr(event, "failure_type", None) == "SageMaker.RESOURCE_LIMIT"
    assert getattr(event, "attempt", None) == 2


async def test_a_wide_fan_out_starts_every_branch_in_one_save(rig: Rig) -> None:
    """200 branches after one step: one plan announces a ready and a start for each, and the
    store takes them in one save."""
    branches = [training(f"B{n:03d}", depends_on=["Root"]) for n in range(200)]
    await rig.put(
        pipeline(
            training("Root"), *branches, training("Join", depends_on=[b["Name"] for b in branches])
        )
    )
    await rig.engine.start_execution("demo", {}, team="search", execution_id="e1")
    await rig.end("e1.Root.1", "Completed")
    assert len(rig.jobs.created) == 201
    for n in range(200):
        await rig.end(f"e1.B{n:03d}.1", "Completed")
    await rig.end("e1.Join.1", "Completed")
    assert (await rig.store.get_execution("e1")).status is ExecutionStatus.SUCCEEDED
