"""The lifecycle's counters: launches by outcome, retries by reason, jobs ended by status."""

from __future__ import annotations

from datetime import UTC, datetime

from stoker.core.events import JobAttemptFailed
from stoker.core.job import JobStatus
from stoker.core.retry import RetryPolicy
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.retrier import Retrier, retry_reason_label
from stoker.ports.training import InvalidRequest
from stoker.telemetry.metrics import REGISTRY
from tests.unit.lifecycle.conftest import World, spec


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def failure(job_id: str, reason: str) -> JobAttemptFailed:
    return JobAttemptFailed(
        job_id=job_id,
        attempt=1,
        training_job_name=f"{job_id}-1",
        instance_type="ml.m5.large",
        failure_reason=reason,
        failure_code=reason.split(":", 1)[0],
        observed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_launches_retries_and_ends_are_counted(world: World) -> None:
    """Two jobs launch; a capacity failure of one is a retry counted by its reason; the
    other is refused at launch for good: a failed launch and a Failed end."""
    launched = count("stoker_launches_total", outcome="launched")
    failed_launches = count("stoker_launches_total", outcome="failed")
    retries = count("stoker_retries_total", reason="CapacityError")
    failed_jobs = count("stoker_jobs_ended_total", status="Failed")
    submitted = count("stoker_jobs_submitted_total")

    for job_id in ("m-a", "m-b"):
        await world.jobs.submit(parse_spec(spec(job_id)))
    world.backend.fail_next(
        "CreateTrainingJob", InvalidRequest("CreateTrainingJob: ValidationException")
    )
    launcher = Launcher(world.transitioner, world.backend, world.clock, sleep=world.sleep)
    await launcher.recover()
    await launcher.drain()
    statuses = {j: (await world.store.get(j)).status for j in ("m-a", "m-b")}
    assert set(statuses.values()) == {JobStatus.LAUNCHED, JobStatus.FAILED}
    running = next(j for j, s in statuses.items() if s is JobStatus.LAUNCHED)

    retrier = Retrier(world.transitioner, world.clock, policy=RetryPolicy(jitter=0))
    moved = await retrier.decide(failure(running, "CapacityError: Unable to provision"))
    assert moved is not None
    assert moved.status is JobStatus.RETRY_SCHEDULED

    assert count("stoker_jobs_submitted_total") - submitted == 2
    assert count("stoker_launches_total", outcome="launched") - launched == 1
    assert count("stoker_launches_total", outcome="failed") - failed_launches == 1
    assert count("stoker_retries_total", reason="CapacityError") - retries == 1
    assert count("stoker_jobs_ended_total", status="Failed") - failed_jobs == 1


def test_a_retry_reason_in_free_words_is_not_a_label() -> None:
    """Failure codes and categories are labels; a training script's own words are `other`,
    so they cannot make a series each."""
    assert retry_reason_label("CapacityError") == "CapacityError"
    assert retry_reason_label("ResourceLimitExceeded") == "ResourceLimitExceeded"
    assert retry_reason_label("CUDA out of memory at step 7") == "other"
