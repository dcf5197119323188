"""1,000 jobs through every service process on real Kafka, DynamoDB Local and the
SageMaker-API simulator with injected faults (capacity errors, algorithm errors, quota
limits, throttling). Each job must end in exactly one terminal state, the simulator must see
at most one CreateTrainingJob per job and attempt, and the webhook receiver exactly one
notification per job. Also: duplicate and invalid input at the edges of the running system.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from stoker.client import ApiError, AsyncClient
from stoker.core import topics
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent, DeadLetter, JobSubmitted
from stoker.core.job import JobStatus
from stoker.ports.bus import EventBus
from tests.e2e.conftest import adapters, notified_verdict, started_stack
from tests.e2e.receiver import WebhookReceiver
from tests.e2e.stack import Stack
from tests.e2e.workload import (
    make_tokens,
    spec,
    submit_events,
    submit_http,
    wait_stored,
    wait_terminal,
)
from tests.support.events import TopicReader
from tests.support.waiting import poll_until, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 1000
BY_EVENT = 100
"""Of JOBS, how many arrive as JobSubmitted events instead of HTTP."""
STOPPED = 20
"""Jobs stopped through the API shortly after submission."""
TIMEOUT_S = 1500.0


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    dynamodb_endpoint: str,
    receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Simulator plus one process per service, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("e2e-faults")
    with started_stack(folder, kafka_bootstrap, dynamodb_endpoint, receiver) as s:
        yield s


async def test_a_thousand_jobs_with_faults_end_once_launch_once_notify_once(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """1,000 jobs (900 over HTTP, 100 as JobSubmitted events, 20 of them also submitted a
    second time the other way, 20 stopped mid-run) under capacity/algorithm errors, quota
    limits and throttling: every job ends in exactly one terminal state, CreateTrainingJob
    created each (job, attempt) name at most once and only for attempts the history shows,
    and the receiver got exactly one notification per job, with the job's final state."""
    run = uuid.uuid4().hex[:8]
    specs = [spec(f"f{run}-{n:04d}", n) for n in range(JOBS)]
    ids = [s.job_id or "" for s in specs]
    by_http, by_event = specs[BY_EVENT:], specs[:BY_EVENT]
    started = time.monotonic()
    async with adapters(stack) as (store, bus):
        tokens = await make_tokens(store)
        await submit_events(bus, by_event)
        # `created` may be False where a timed-out request was retried after it had landed.
        await submit_http(stack.api_url, by_http, tokens)
        # The same ids again, the other way round: still one job each.
        await wait_stored(store, ids[:BY_EVENT], TIMEOUT_S)
        await submit_events(bus, by_http[:20])
        again = await submit_http(stack.api_url, by_event[:20], tokens)
        submitted_s = time.monotonic() - started
        async with AsyncClient(stack.api_url, token=tokens.admin, timeout_s=300.0) as client:
            refused = []
            for job_id in ids[BY_EVENT : BY_EVENT + STOPPED]:
                try:
                    await client.stop(job_id)
                except ApiError as exc:
                    refused.append(exc.status_code)
        assert set(refused) <= {409}, refused  # 409: it had ended already
        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive)
        terminal_s = time.monotonic() - started
        verdict = await notified_verdict(store, ids, stack, receiver)
    stats = stack.sim_stats()
    quota_refusals = len(stack.grep("launcher", "ResourceLimitExceeded"))
    print(
        f"\n{JOBS} jobs: submitted in {submitted_s:.1f} s, all terminal after {terminal_s:.1f} s;"
        f" final {dict(verdict.final)}; attempts {dict(sorted(verdict.attempts.items()))};"
        f" retries {verdict.retries}; simulator requests {stats['requests']},"
        f" throttled {stats['throttled']}; ResourceLimitExceeded {quota_refusals}"
    )
    assert not any(again), "a job id submitted twice made a second job"
    assert not verdict.problems, "\n".join(verdict.problems)

    # What each notification tells (docs/notifications.md): when the job ended; a failure's
    # reason; a Completed job's billable time and model artifacts, or that they follow, in
    # which case the job's details get them (and a JobDescribed event goes out).
    told = [note for note in receiver.notes() if note["job_id"] in set(ids)]
    gaps = [gap for note in told if (gap := _untold(note))]
    assert not gaps, "\n".join(gaps[:20])
    following = {n["job_id"] for n in told if n["state"] == "Completed" and n["details_pending"]}
    async with adapters(stack) as (store, _bus):

        async def described() -> bool:
            jobs = (await store.get_many(sorted(following))).values()
            return all(not j.details.get("details_pending") for j in jobs)

        await poll_until(described, 600, 1.0, what="the details that follow the notifications")
        for job_id in following:
            details = (await store.get(job_id)).details
            assert details.get("billable_seconds") is not None, job_id
            assert details.get("model_artifacts"), job_id
    # The faults that do not depend on the machine's speed really happened. Quota refusals
    # and throttling need launches and ends to overlap, which a slow machine may not give;
    # they are printed above, and docs/testing-lifecycle.md records what a run showed.
    assert verdict.final["Failed"] > 0
    assert verdict.final["Completed"] > 0
    assert verdict.retries > 0


def _untold(note: dict[str, Any]) -> str | None:
    """What a notification about one job leaves out that the docs promise, if anything."""
    job_id, state = note["job_id"], note["state"]
    try:
        datetime.fromisoformat(str(note.get("ended_at")))
    except ValueError:
        return f"{job_id}: no end time ({note.get('ended_at')!r})"
    if state == "Failed" and not note.get("reason"):
        return f"{job_id}: Failed without its reason"
    known = note.get("billable_seconds") is not None and note.get("model_artifacts")
    if state == "Completed" and not note.get("details_pending") and not known:
        return f"{job_id}: Completed without billable time or model, none to follow"
    return None


async def test_duplicate_and_invalid_input_at_the_edges(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """One job id over HTTP twice and as an event makes one job with one notification;
    an invalid submission is a 422 naming each bad field; an invalid JobSubmitted event
    lands on stoker.deadletter with the reason; an unknown id is a 404; stopping a
    finished job is a 409 carrying its state."""
    run = uuid.uuid4().hex[:8]
    twice = spec(f"d{run}-0001", 0)
    async with adapters(stack) as (store, bus):
        tokens = await make_tokens(store)
        async with (
            AsyncClient(stack.api_url, token=tokens.admin, timeout_s=300.0) as client,
            AsyncClient(
                stack.api_url, token=tokens.by_owner[twice.owner or ""], timeout_s=300.0
            ) as owner,
        ):
            first = await owner.submit(twice)
            second = await owner.submit(twice)
            await submit_events(bus, [twice])
            assert (first.created, second.created) == (True, False)

            with pytest.raises(ApiError) as bad:
                await client.submit({"owner": "", "priority": 1000, "training": {}})
            assert bad.value.status_code == 422
            assert {"owner", "priority", "training"} <= set(bad.value.problems), bad.value.problems

            # An event whose spec lacks its owner, and one that is not JSON at all.
            good = CloudEvent.wrap(
                JobSubmitted(spec=spec(f"d{run}-0002", 2)), time=first.job.created_at
            )
            broken = good.model_dump(mode="json")
            del broken["data"]["spec"]["owner"]

            await bus.publish_raw(topics.SUBMISSIONS, f"d{run}-0002", orjson.dumps(broken))
            await bus.publish_raw(topics.SUBMISSIONS, f"d{run}-0003", b"{not json")
            letters = await _dead_letters(
                bus, {f"d{run}-0002", f"d{run}-0003"}, timeout_s=TIMEOUT_S
            )
            assert "owner" in letters[f"d{run}-0002"].reason
            assert letters[f"d{run}-0002"].original_topic == topics.SUBMISSIONS
            assert letters[f"d{run}-0003"].error_kind == "decode"
            with pytest.raises(JobNotFound):
                await client.get(f"d{run}-0002")  # the invalid event made no job

            with pytest.raises(JobNotFound):
                await client.get(f"d{run}-nope")
            await wait_terminal(store, [twice.job_id or ""], 120, alive=stack.check_alive)
            finished = await client.get(twice.job_id or "")
            with pytest.raises(ApiError) as conflict:
                await client.stop(finished.job_id)
            assert conflict.value.status_code == 409
            assert conflict.value.job_status == finished.status.value
            history = await client.history(finished.job_id)
            assert next(t.to_status for t in history) is JobStatus.NEW
            assert sum(1 for t in history if t.to_status is JobStatus.NEW) == 1
            await wait_until(
                lambda: finished.job_id in receiver.keys_per_job(), 60, 0.1, what="the notification"
            )
            assert receiver.deliveries_per_job()[finished.job_id] == 1


async def _dead_letters(bus: EventBus, keys: set[str], timeout_s: float) -> dict[str, DeadLetter]:
    """Read stoker.deadletter (own consumer group) until a letter for every key is there."""

    def found() -> dict[str, DeadLetter]:
        letters = reader.events_of(DeadLetter)
        return {letter.original_key: letter for letter in letters if letter.original_key in keys}

    async with TopicReader(bus, topics.DEAD_LETTER) as reader:
        await reader.read_until(lambda: keys <= set(found()), timeout_s, wait_s=1.0)
    return found()
