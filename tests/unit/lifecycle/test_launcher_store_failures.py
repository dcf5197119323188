"""The launcher when the store fails on its launch path: the slot is freed at once and the
job is offered again after the store_retry wait, so it launches once the store answers."""

from __future__ import annotations

from collections.abc import Sequence

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import FakeClock
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.naming import training_job_name
from stoker.core.retry import RetryPolicy
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.lifecycle.launcher import Launcher, LauncherConfig
from stoker.lifecycle.outbox_events import status_changed
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import BusRecord
from tests.support.waiting import poll_until
from tests.unit.lifecycle.conftest import spec
from tests.unit.lifecycle.fakes import FakeTrainingBackend

RECORD = BusRecord(topic="stoker.jobs.lifecycle", partition=0, offset=0, key="k", value=b"")
STORE_RETRY = RetryPolicy(initial_delay_s=1, multiplier=2, max_delay_s=8, jitter=0, max_attempts=10)


class FlakyStore(MemoryJobStore):
    """The memory store, made to fail the next reads or transitions to a given status the
    way an unreachable DynamoDB does (InfrastructureUnavailable)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_reads: dict[str, int] = {}
        self.failing_moves: dict[JobStatus, int] = {}

    async def get(self, job_id: str) -> JobRecord:
        if self.failing_reads.get(job_id, 0) > 0:
            self.failing_reads[job_id] -= 1
            raise InfrastructureUnavailable("store unreachable")
        return await super().get(job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        return {job_id: await self.get(job_id) for job_id in job_ids}

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        if self.failing_moves.get(change.to_status, 0) > 0:
            self.failing_moves[change.to_status] -= 1
            raise InfrastructureUnavailable("store unreachable")
        return await super().transition(
            job_id, change, expected_version=expected_version, outbox=outbox, current=current
        )


class Setup:
    def __init__(self, caps: dict[str, int] | None = None) -> None:
        self.clock = FakeClock()
        self.store = FlakyStore()
        self.bus = MemoryBus()
        self.backend = FakeTrainingBackend(self.clock)
        self.sleeps: list[float] = []
        self.transitioner = Transitioner(self.store, self.bus)
        self.jobs = JobService(self.transitioner, self.clock)
        self.launcher = Launcher(
            self.transitioner,
            self.backend,
            self.clock,
            LauncherConfig(caps=caps or {}, store_retry=STORE_RETRY),
            sleep=self.sleep,
        )

    async def start(self) -> None:
        await self.store.start()
        await self.bus.start()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    async def status(self, job_id: str) -> JobStatus:
        return (await MemoryJobStore.get(self.store, job_id)).status

    async def until(self, job_id: str, status: JobStatus) -> None:
        async def reached() -> bool:
            return await self.status(job_id) is status

        await poll_until(reached, timeout_s=5, what=f"{job_id} {status.value}")


async def test_a_failed_write_after_create_frees_the_slot_and_launches_once() -> None:
    """CreateTrainingJob succeeded but recording Launched failed twice: the slot is not
    held meanwhile, the job is offered again after the store_retry waits (1 s, 2 s), and
    the retried launch finds the training job already made: one training job, Launched."""
    s = Setup(caps={"ml.m5.large": 1})
    await s.start()
    await s.jobs.submit(parse_spec(spec()))
    s.store.failing_moves[JobStatus.LAUNCHED] = 2
    await s.launcher.recover()
    await s.until("job-1", JobStatus.LAUNCHED)
    await s.launcher.drain()
    job = await s.store.get("job-1")
    assert job.attempt == 1
    assert job.details["training_job_name"] == training_job_name("job-1", 1)
    assert list(s.backend.jobs) == [training_job_name("job-1", 1)]
    assert s.sleeps == [1, 2]
    assert s.launcher.admission.in_use("ml.m5.large") == 1


async def test_a_failed_read_lets_the_next_job_have_the_slot() -> None:
    """The first job's read fails: its slot goes at once to the job waiting behind it, and
    the first job, offered again, launches when that job ends instead of staying New."""
    s = Setup(caps={"ml.m5.large": 1})
    await s.start()
    await s.jobs.submit(parse_spec(spec("job-1")))
    await s.jobs.submit(parse_spec(spec("job-2")))
    s.store.failing_reads["job-1"] = 1
    await s.launcher.recover()
    await s.until("job-2", JobStatus.LAUNCHED)
    assert await s.status("job-1") is JobStatus.NEW
    launched = await s.store.get("job-2")
    failed = await s.transitioner.move(
        launched, JobChange(to_status=JobStatus.FAILED, at=s.clock.now(), reason="test")
    )
    await s.launcher.on_event(status_changed(launched, failed, "test")[0][1], RECORD)
    await s.until("job-1", JobStatus.LAUNCHED)
    await s.launcher.drain()
    assert sorted(s.backend.jobs) == [training_job_name("job-1", 1), training_job_name("job-2", 1)]
    assert s.launcher.admission.in_use("ml.m5.large") == 1
