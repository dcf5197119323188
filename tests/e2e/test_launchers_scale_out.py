"""Three launcher processes share one per instance type cap through the job store (ADR
0024), on real Kafka and DynamoDB Local against the SageMaker-API simulator, beside two
monitors of which one is active. One launcher is SIGKILLed while it holds slots, and the
active monitor with it: the cap is never passed (the simulator's own record of instances
in use at once), no attempt is created twice or left out, every job ends (the standby
monitor follows them), and no slot is left held.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoker.core.job import JobStatus
from stoker.core.naming import training_job_name
from stoker.core.spec import JobSpec
from tests.e2e.conftest import adapters
from tests.e2e.stack import Stack, StackConfig
from tests.e2e.workload import FAILURE_RULES, OOM, submit_events, wait_terminal
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 48
CAP = 4
TYPE = "ml.m5.large"
LAUNCHERS = ("launcher-1", "launcher-2", "launcher-3")
VICTIM = "launcher-2"
MONITORS = ("monitor-1", "monitor-2")
TIMEOUT_S = 180.0
FAULTS = {
    "seed": 11,
    # 600 simulated seconds per wall second: start-up 0.1 s, training 0.5-1.5 s.
    "speedup": 600,
    "startup_s": 60,
    "duration": {"kind": "uniform", "low_s": 300, "high_s": 900},
}
SETTINGS = {
    "STOKER_INSTANCE_CAPS": json.dumps({TYPE: CAP}),
    "STOKER_MONITOR_POLL_INTERVAL_S": "0.5",
    "STOKER_MONITOR_API_RATE_PER_S": "40",
    "STOKER_RETRY_INITIAL_DELAY_S": "0.2",
    "STOKER_RETRY_MAX_DELAY_S": "1",
    "STOKER_RETRY_MAX_ATTEMPTS": "3",
    "STOKER_FAILURE_RULES": json.dumps(FAILURE_RULES),
}


@pytest.fixture
def stack(
    kafka_bootstrap: str, dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("e2e-scale-out")
    config = StackConfig(faults=FAULTS, settings=SETTINGS)
    with Stack(folder, kafka_bootstrap, dynamodb_endpoint, config) as started:
        started.start_all([])
        # One process for the rest: fewer interpreters to start on a busy machine.
        started.start("others", "intake", "retrier", "relay")
        for name in (*LAUNCHERS, *MONITORS):
            started.start(name, name.split("-")[0])
        yield started


def _spec(job_id: str, n: int) -> JobSpec:
    """Every job on the capped type; every sixth fails with a retriable error each time
    (three attempts, then Failed), so retries come due while launchers come and go."""
    hyper = {"epochs": "1"}
    if n % 6 == 5:
        hyper["fail_with"] = f"RuntimeError: {OOM} (injected)"
    return JobSpec.model_validate(
        {
            "job_id": job_id,
            "owner": "scale-out",
            "training": {
                "RoleArn": "arn:aws:iam::123456789012:role/stoker-e2e",
                "AlgorithmSpecification": {"TrainingImage": "e2e:1", "TrainingInputMode": "File"},
                "HyperParameters": hyper,
                "OutputDataConfig": {"S3OutputPath": "s3://stoker-e2e/out"},
                "ResourceConfig": {"InstanceType": TYPE, "InstanceCount": 1, "VolumeSizeInGB": 5},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
        }
    )


async def test_three_launchers_share_a_cap_and_survive_one_killed(stack: Stack) -> None:
    """Caps never exceeded, no attempt launched twice, no job left behind, no slot leaked."""
    run = uuid.uuid4().hex[:8]
    specs = [_spec(f"s{run}-{n:03d}", n) for n in range(JOBS)]
    ids = [s.job_id or "" for s in specs]
    victim = f":{stack.pid(VICTIM)}:"
    async with adapters(stack) as (store, bus):
        await submit_events(bus, specs)

        async def victim_holds_slots() -> bool:
            stack.check_alive()
            monitors = [lease for lease in await store.leases("monitor") if lease.name == "monitor"]
            slots = await store.held_slots(TYPE)
            return bool(monitors) and any(victim in slot.owner for slot in slots)

        await poll_until(victim_holds_slots, 60, interval_s=0.05, what="the victim's slots")
        (lease,) = [lease for lease in await store.leases("monitor") if lease.name == "monitor"]
        active = next(name for name in MONITORS if f":{stack.pid(name)}:" in lease.owner)
        stack.kill_for_good(VICTIM)
        stack.kill_for_good(active)
        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive, stall_s=60)

        async def no_slot_held() -> bool:
            return await store.held_slots() == []

        await poll_until(no_slot_held, 30, interval_s=0.2, what="every slot freed")
        jobs = {job_id: await store.get(job_id) for job_id in ids}
        histories = {job_id: await store.history(job_id) for job_id in ids}

    stats = stack.sim_stats()
    assert stats["peak_instances_in_use"][TYPE] <= CAP, stats["peak_instances_in_use"]
    assert stats["max_created_per_name"] == 1
    created = set(stats["created"])
    for job_id, job in jobs.items():
        history = histories[job_id]
        assert job.status.terminal, (job_id, job.status)
        assert sum(1 for line in history if line.to_status.terminal) == 1, history
        launched = {
            line.attempt
            for line in history
            if line.to_status in (JobStatus.LAUNCHING, JobStatus.LAUNCHED)
        }
        assert launched == set(range(1, job.attempt + 1)), (job_id, launched)
        names = {name for name in created if name.startswith(f"{job_id}-")}
        assert names == {training_job_name(job_id, a) for a in launched}, (job_id, names)
    assert {job.status for job in jobs.values()} == {JobStatus.COMPLETED, JobStatus.FAILED}
    survivors = [n for n in LAUNCHERS if n != VICTIM]
    assert any(stack.grep(name, "taking over") for name in survivors)
    standby = next(name for name in MONITORS if name != active)
    assert stack.grep(standby, "holding the lease; active")
