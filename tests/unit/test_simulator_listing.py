"""The simulator's ListTrainingJobs by last-modified time, which reads only jobs whose
timeline reaches past the bound: jobs that ended long ago stay out, a stop moves a job's
last change, and a job still to change is listed once it has."""

from __future__ import annotations

from typing import Any

from stoker.core.clock import FakeClock
from stoker.simulator import DurationSpec, FaultConfig
from stoker.simulator.engine import SimulatedSageMaker


def _request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
        "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def _changed_after(engine: SimulatedSageMaker, clock: FakeClock, seconds_ago: float) -> set[str]:
    bound = clock.now().timestamp() - seconds_ago
    page = engine.list_training_jobs({"LastModifiedTimeAfter": bound, "MaxResults": 100})
    return {row["TrainingJobName"] for row in page["TrainingJobSummaries"]}


def test_listing_by_modified_time_follows_timelines_and_stops() -> None:
    clock = FakeClock()
    faults = FaultConfig(startup_s=10, duration=DurationSpec(kind="fixed", seconds=100), stop_s=5)
    engine = SimulatedSageMaker(faults, clock)
    engine.create_training_job(_request("old"))  # Completed at t=110
    clock.advance(200)
    engine.create_training_job(_request("running"))  # starts at t=210, ends at t=310
    engine.create_training_job(_request("stopped"))
    clock.advance(20)  # t=220: both past their start-up

    assert _changed_after(engine, clock, 15) == {"running", "stopped"}
    assert _changed_after(engine, clock, 5) == set()  # nothing changed in the last 5 s
    assert "old" in _changed_after(engine, clock, 1_000)  # no bound too old for the index

    engine.stop_training_job({"TrainingJobName": "stopped"})  # Stopping now, Stopped at 225
    clock.advance(1)
    assert _changed_after(engine, clock, 1.5) == {"stopped"}
    clock.advance(10)  # t=231: Stopped at 225
    assert _changed_after(engine, clock, 7) == {"stopped"}
    clock.advance(100)  # t=331: "running" Completed at 310
    assert _changed_after(engine, clock, 30) == {"running"}
    assert _changed_after(engine, clock, 10) == set()
