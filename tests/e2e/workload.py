"""Jobs for the end-to-end runs: specs, the two ways in (HTTP and JobSubmitted events),
the runs' tokens, waiting for the store to settle, and the invariants every run must keep."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from stoker.auth.tokens import TokenService
from stoker.client import AsyncClient
from stoker.core import topics
from stoker.core.auth import DEFAULT_TEAM, Role
from stoker.core.clock import SystemClock
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent, JobSubmitted
from stoker.core.job import TERMINAL_STATUSES, JobRecord, JobStatus, Transition
from stoker.core.naming import training_job_name
from stoker.core.retry import RetryPolicy
from stoker.core.spec import JobSpec
from stoker.ports.bus import Publisher
from stoker.ports.store import JobStore, TokenStore
from tests.support.waiting import poll_until

CAPPED_TYPE = "ml.m5.large"
"""The launcher's admission cap equals the simulator's quota for this type."""
UNCAPPED_TYPE = "ml.c5.xlarge"
"""No admission cap here: the simulator's quota answers ResourceLimitExceeded."""
FALLBACK_TYPE = "ml.c5.2xlarge"
OOM = "CUDA out of memory"
"""A failure reason the runs' retry rule retries (every attempt of such a job fails)."""
FAILURE_RULES = [{"reason_pattern": OOM, "action": "retry"}]


OWNERS = tuple(f"owner-{n}" for n in range(5))


@dataclass(frozen=True)
class Tokens:
    """The run's API tokens: an admin's (reads and stops every job) and a submitter's per
    owner, all of the default team, which JobSubmitted events without a team also join, so a
    job id may arrive both ways and still be one job."""

    admin: str
    by_owner: dict[str, str]


async def make_tokens(store: TokenStore) -> Tokens:
    service = TokenService(store, SystemClock())
    admin = await service.create("e2e-admin", DEFAULT_TEAM, Role.ADMIN)
    by_owner = {
        owner: (await service.create(owner, DEFAULT_TEAM, Role.SUBMITTER)).token for owner in OWNERS
    }
    return Tokens(admin.token, by_owner)


def spec(job_id: str, n: int) -> JobSpec:
    """Job `n` of a run: mixed instance types, owners, priorities, some doomed to OOM."""
    hyper = {"epochs": "1"}
    if n % 25 == 7:
        hyper["fail_with"] = f"RuntimeError: {OOM} (injected)"
    return JobSpec.model_validate(
        {
            "job_id": job_id,
            "owner": OWNERS[n % len(OWNERS)],
            "priority": n % 3,
            "instance_type_fallbacks": [FALLBACK_TYPE],
            "training": {
                "RoleArn": "arn:aws:iam::123456789012:role/stoker-e2e",
                "AlgorithmSpecification": {"TrainingImage": "e2e:1", "TrainingInputMode": "File"},
                "HyperParameters": hyper,
                "OutputDataConfig": {"S3OutputPath": "s3://stoker-e2e/out"},
                "ResourceConfig": {
                    "InstanceType": CAPPED_TYPE if n % 2 else UNCAPPED_TYPE,
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 5,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            },
        }
    )


API_RESTARTING = RetryPolicy(
    initial_delay_s=0.2, multiplier=1, max_delay_s=0.2, jitter=0, max_attempts=1_000_000
)
"""A refused connection while the API restarts: try again shortly, until the deadline."""


async def submit_http(
    url: str,
    specs: Sequence[JobSpec],
    tokens: Tokens,
    *,
    concurrency: int = 8,
    timeout_s: float = 900.0,
) -> list[bool]:
    """Submit through the SDK, each spec with its owner's token; a refused connection (the
    API restarting) is retried, which is safe because every spec carries its job id.
    Returns `created` per spec."""
    gate = asyncio.Semaphore(concurrency)
    clients = {
        owner: AsyncClient(url, token=token, timeout_s=30.0)
        for owner, token in tokens.by_owner.items()
    }

    async def one(s: JobSpec) -> bool:
        client = clients[s.owner or ""]
        async with gate:
            async for attempt in API_RESTARTING.retrying(
                retry_on=lambda error: isinstance(error, httpx.TransportError),
                deadline_s=timeout_s,
            ):
                with attempt:
                    return (await client.submit(s)).created
        raise AssertionError("unreachable: the last failure is raised")

    try:
        return list(await asyncio.gather(*(one(s) for s in specs)))
    finally:
        for client in clients.values():
            await client.close()


async def submit_events(bus: Publisher, specs: Sequence[JobSpec]) -> None:
    """Produce JobSubmitted events on the submissions topic, as any Kafka client would."""
    events = [CloudEvent.wrap(JobSubmitted(spec=s), time=datetime.now(UTC)) for s in specs]
    for event in events:
        await bus.publish(topics.SUBMISSIONS, event)


async def statuses(store: JobStore, job_ids: Sequence[str]) -> dict[str, JobStatus | None]:
    """Current status of each job (None: not stored yet), read consistently."""
    gate = asyncio.Semaphore(16)

    async def one(job_id: str) -> JobStatus | None:
        async with gate:
            try:
                return (await store.get(job_id)).status
            except JobNotFound:
                return None

    found = await asyncio.gather(*(one(j) for j in job_ids))
    return dict(zip(job_ids, found, strict=True))


async def wait_stored(store: JobStore, job_ids: Sequence[str], timeout_s: float) -> None:
    """Until every job is in the store (events reach it through the intake's consumer)."""

    async def all_stored() -> bool:
        return all(s is not None for s in (await statuses(store, job_ids)).values())

    await poll_until(all_stored, timeout_s, interval_s=2.0, what="every job stored")


async def count_terminal(store: JobStore, job_ids: Sequence[str]) -> int:
    """How many of `job_ids` are terminal, from the status index (cheap; may lag a little)."""
    wanted = set(job_ids)
    done = 0
    for status in TERMINAL_STATUSES:
        cursor: str | None = None
        while True:
            page = await store.list_jobs(status=status, limit=1000, cursor=cursor)
            done += sum(1 for job in page.items if job.job_id in wanted)
            cursor = page.next_cursor
            if cursor is None:
                break
    return done


STALL_S = 300.0
"""No job became terminal for this long: the run is stuck (the slowest normal gap is a
service restart of a few seconds, or a retry's backoff of at most a second)."""


async def wait_terminal(
    store: JobStore,
    job_ids: Sequence[str],
    timeout_s: float,
    *,
    alive: Any = None,
    stall_s: float = STALL_S,
) -> None:
    """Until every job is terminal (checked with consistent reads at the end). Fails after
    `timeout_s`, or sooner when no job became terminal for `stall_s`, naming stuck jobs."""
    deadline = time.monotonic() + timeout_s
    done, progressed_at = -1, time.monotonic()
    while True:
        if alive is not None:
            alive()
        now_done = await count_terminal(store, job_ids)
        if now_done > done:
            done, progressed_at = now_done, time.monotonic()
        if now_done >= len(job_ids):
            current = await statuses(store, job_ids)
            if all(s is not None and s.terminal for s in current.values()):
                return
        waited = time.monotonic() - progressed_at
        if time.monotonic() > deadline or waited > stall_s:
            current = await statuses(store, job_ids)
            stuck = {j: str(s) for j, s in current.items() if s is None or not s.terminal}
            raise AssertionError(
                f"{len(stuck)} jobs not terminal (none ended in the last {waited:.0f} s): "
                f"{dict(Counter(stuck.values()))}; e.g. {sorted(stuck.items())[:10]}"
            )
        await asyncio.sleep(2.0)  # polling interval of the wait, not a synchronisation


@dataclass
class Verdict:
    """What the checks found; `problems` is empty when every invariant holds."""

    final: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


_LAUNCHING = (JobStatus.LAUNCHING, JobStatus.LAUNCHED)


async def verify(
    store: JobStore,
    job_ids: Sequence[str],
    sim_stats: dict[str, Any],
    keys_per_job: dict[str, set[str]],
    notified_states: dict[str, set[str]],
    *,
    deliveries_per_job: Counter[str] | None = None,
) -> Verdict:
    """Every invariant of the issue, over the jobs of one run.

    - each job is terminal, and its history has exactly one terminal transition, the last;
    - the simulator created at most one training job per name, and every name it created
      for these jobs is `training_job_name(job, attempt)` for an attempt the history shows
      launching (Launching or Launched), or else belongs to a job that ended Stopped and
      was asked to stop at the simulator (a create that raced the stop); the
      request may have come after that training job had ended on its own;
    - each job was notified under exactly one idempotency key (and, when raw counts are
      given, in exactly one message), with the state the store holds.
    """
    verdict = Verdict()
    if sim_stats["max_created_per_name"] > 1:
        verdict.problem(f"simulator created a name twice: {sim_stats['max_created_per_name']}")
    created: set[str] = {n.lower() for n in sim_stats["created"]}
    stopped_at_simulator: set[str] = {
        n.lower() for n in (*sim_stats["stop_requests"], *sim_stats["stops_after_end"])
    }
    gate = asyncio.Semaphore(16)

    async def load(job_id: str) -> tuple[JobRecord, list[Transition]]:
        async with gate:
            return await store.get(job_id), list(await store.history(job_id))

    loaded = await asyncio.gather(*(load(j) for j in job_ids))
    for job, history in loaded:
        verdict.final[job.status.value] += 1
        verdict.attempts[job.attempt] += 1
        ends = [t for t in history if t.to_status.terminal]
        verdict.retries += sum(1 for t in history if t.to_status is JobStatus.RETRY_SCHEDULED)
        if not job.status.terminal:
            verdict.problem(f"{job.job_id}: not terminal ({job.status.value})")
        if len(ends) != 1 or history[-1].to_status is not job.status:
            verdict.problem(
                f"{job.job_id}: {len(ends)} terminal transitions: "
                + " -> ".join(t.to_status.value for t in history)
            )
        versions = [t.version for t in history]
        if versions != list(range(1, len(history) + 1)):
            verdict.problem(f"{job.job_id}: history versions {versions}")
        launched = {t.attempt for t in history if t.to_status in _LAUNCHING}
        allowed = {training_job_name(job.job_id, a) for a in launched}
        mine = {n for n in created if n.startswith(job.job_id.lower() + "-")}
        if job.status is JobStatus.STOPPED:
            allowed |= mine & stopped_at_simulator
        if not mine <= allowed:
            verdict.problem(f"{job.job_id}: names {sorted(mine - allowed)} match no attempt")
        keys = keys_per_job.get(job.job_id, set())
        if len(keys) != 1:
            verdict.problem(f"{job.job_id}: notified under {len(keys)} keys")
        if deliveries_per_job is not None and deliveries_per_job[job.job_id] != 1:
            verdict.problem(
                f"{job.job_id}: {deliveries_per_job[job.job_id]} webhook deliveries, not 1"
            )
        states = notified_states.get(job.job_id, set())
        if states and states != {job.status.value}:
            verdict.problem(f"{job.job_id}: notified {sorted(states)}, store {job.status.value}")
    strangers = set(keys_per_job) - set(job_ids)
    if strangers:
        verdict.problem(f"notifications for unknown jobs: {sorted(strangers)[:5]}")
    return verdict
