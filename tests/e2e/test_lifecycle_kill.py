"""The fault run again, with every service process in turn killed with SIGKILL mid-run and
restarted: each job still ends in exactly one terminal state, each (job, attempt) is created
at most once, and each job is notified under exactly one idempotency key.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator

import pytest

from stoker.core.job import JobStatus
from stoker.core.spec import JobSpec
from stoker.ports.bus import Publisher
from stoker.ports.store import JobStore
from tests.e2e.conftest import adapters, notified_verdict, started_stack
from tests.e2e.receiver import WebhookReceiver
from tests.e2e.stack import SERVICES, Stack
from tests.e2e.workload import (
    Tokens,
    count_terminal,
    make_tokens,
    spec,
    submit_events,
    submit_http,
    wait_terminal,
)
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 300
WAVE = 20
"""Jobs are submitted in waves, every third wave as JobSubmitted events, so submissions are
still arriving while the API and the intake are killed."""
TIMEOUT_S = 900.0
MAX_SAME_KEY_REPEATS = 16
"""The notifier's documented crash window: a message in flight when it is killed may be sent
again under the same key (at most STOKER_NOTIFY_MAX_IN_FLIGHT of them)."""


@pytest.fixture
def stack(
    kafka_bootstrap: str,
    dynamodb_endpoint: str,
    receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("e2e-kill")
    with started_stack(folder, kafka_bootstrap, dynamodb_endpoint, receiver) as s:
        yield s


async def _submit_in_waves(url: str, bus: Publisher, specs: list[JobSpec], tokens: Tokens) -> None:
    for wave, start in enumerate(range(0, len(specs), WAVE)):
        batch = specs[start : start + WAVE]
        if wave % 3 == 2:
            await submit_events(bus, batch)
        else:
            await submit_http(url, batch, tokens, timeout_s=TIMEOUT_S)


async def _progress(store: JobStore, ids: list[str], at_least: int, stack: Stack) -> int:
    """Wait until at least `at_least` of the jobs are terminal; returns the count."""
    done = 0

    async def enough() -> bool:
        nonlocal done
        stack.check_alive()
        done = await count_terminal(store, ids)
        return done >= at_least

    await poll_until(enough, TIMEOUT_S, interval_s=2.0, what=f"{at_least} terminal jobs")
    return done


async def test_every_service_killed_mid_run_and_restarted_keeps_every_invariant(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """300 jobs under the same faults; api, intake, launcher, monitor, retrier, relay and
    notifier are each SIGKILLed in turn while jobs are in flight and started again. In the
    end every job has exactly one terminal transition, the simulator created no name twice
    and only names of recorded attempts, and every job reached the receiver under exactly
    one idempotency key with its final state."""
    run = uuid.uuid4().hex[:8]
    specs = [spec(f"k{run}-{n:04d}", n) for n in range(JOBS)]
    ids = [s.job_id or "" for s in specs]
    # A few more jobs end between kills, so all seven happen in the first third of the run.
    step = max(1, JOBS // 20)
    async with adapters(stack) as (store, bus):
        tokens = await make_tokens(store)
        submitter = asyncio.create_task(_submit_in_waves(stack.api_url, bus, specs, tokens))
        done = 0
        for name in SERVICES:
            done = await _progress(store, ids, done + step, stack)
            assert done < JOBS, f"nothing was in flight when {name} was killed"
            assert stack.kill(name) == -signal.SIGKILL
            stack.restart(name)
        await submitter
        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive)
        verdict = await notified_verdict(
            store, ids, stack, receiver, timeout_s=180, count_deliveries=False
        )
    repeats = sum(receiver.deliveries_per_job()[j] for j in ids) - JOBS
    print(
        f"\n{JOBS} jobs with {len(SERVICES)} kills: final {dict(verdict.final)};"
        f" retries {verdict.retries}; same-key repeats {repeats}; restarts {stack.restarts}"
    )
    assert not verdict.problems, "\n".join(verdict.problems)
    assert repeats <= MAX_SAME_KEY_REPEATS
    assert verdict.final[JobStatus.COMPLETED.value] > 0
    assert verdict.final[JobStatus.FAILED.value] > 0
