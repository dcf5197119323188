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


def test_pages_continue_in_order_even_after_their_snapshot_was_dropped() -> None:
    """Later pages come from the first page's snapshot; when the simulator has dropped it
    (it keeps the newest few), the listing is made again and resumes after the last name."""
    clock = FakeClock()
    engine = SimulatedSageMaker(FaultConfig(duration=DurationSpec(kind="instant")), clock)
    for n in range(5):
        engine.create_training_job(_request(f"job-{n}"))
        clock.advance(1)

    def names(page: dict[str, Any]) -> list[str]:
        return [row["TrainingJobName"] for row in page["TrainingJobSummaries"]]

    first = engine.list_training_jobs({"MaxResults": 2})
    kept = engine.list_training_jobs({"MaxResults": 2, "NextToken": first["NextToken"]})
    assert names(first) + names(kept) == ["job-4", "job-3", "job-2", "job-1"]

    dropped = engine.list_training_jobs({"MaxResults": 2})
    for _ in range(100):  # enough newer listings to push the snapshot out
        engine.list_training_jobs({"MaxResults": 1})
    rest = engine.list_training_jobs({"MaxResults": 100, "NextToken": dropped["NextToken"]})
    assert names(rest) == ["job-2", "job-1", "job-0"]


def test_the_peak_of_instances_in_use_counts_overlapping_jobs_only() -> None:
    """The peak per instance type comes from the jobs' timelines: two jobs running at once
    count two, a job created after another ended does not add to it, and a stop ends a
    job's use early."""
    clock = FakeClock()
    faults = FaultConfig(startup_s=10, duration=DurationSpec(kind="fixed", seconds=100), stop_s=5)
    engine = SimulatedSageMaker(faults, clock)
    engine.create_training_job(_request("a"))  # in use t=0..110
    clock.advance(50)
    engine.create_training_job(_request("b"))  # in use t=50..160
    engine.stop_training_job({"TrainingJobName": "b"})  # Stopped at t=55
    clock.advance(10)
    engine.create_training_job(_request("c"))  # t=60: overlaps a only
    clock.advance(200)
    engine.create_training_job(_request("d"))  # t=260: alone
    assert engine.peak_instances_in_use() == {"ml.m5.large": 2}
