"""Kafka for the events, SQLite for the jobs (STOKER_STORE=sqlite): a team with Kafka and no
DynamoDB runs the whole lifecycle on one machine, one process per service sharing one job
store file, against the SageMaker-API simulator with faults. Every job ends once, each
attempt is launched once, and each job is notified once with its final state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoker.adapters.store.sqlite import SqliteJobStore
from tests.e2e.conftest import FAULTS, SETTINGS, adapters, notified_verdict
from tests.e2e.receiver import WebhookReceiver
from tests.e2e.stack import Stack, StackConfig
from tests.e2e.workload import (
    make_tokens,
    spec,
    submit_events,
    submit_http,
    wait_terminal,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 60
TIMEOUT_S = 600.0
NO_DYNAMODB = "http://127.0.0.1:9"
"""Nothing listens here: a process that reached for DynamoDB would fail."""


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("e2e-kafka-sqlite")
    config = StackConfig(
        faults=FAULTS,
        settings={**SETTINGS, "STOKER_STORE": "sqlite"},
        webhook_url=receiver.url,
    )
    with Stack(folder, kafka_bootstrap, NO_DYNAMODB, config) as started:
        started.start_all()
        yield started


async def test_the_lifecycle_runs_on_kafka_with_a_sqlite_store(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    """Jobs in over HTTP and as JobSubmitted events, through launcher, monitor, retrier,
    relay and notifier processes: all end, none twice, each notified once."""
    run = uuid.uuid4().hex[:8]
    specs = [spec(f"k{run}-{n:03d}", n) for n in range(JOBS)]
    ids = [s.job_id or "" for s in specs]
    async with adapters(stack) as (store, bus):
        assert isinstance(store, SqliteJobStore), "the test reads the services' own file"
        tokens = await make_tokens(store)
        await submit_events(bus, specs[: JOBS // 4])
        await submit_http(stack.api_url, specs[JOBS // 4 :], tokens)
        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive)
        verdict = await notified_verdict(store, ids, stack, receiver)
    assert not verdict.problems, "\n".join(verdict.problems)
    assert sum(verdict.final.values()) == JOBS
    assert (stack.workdir / "data" / "jobs.sqlite3").exists()
    assert not stack.grep("launcher", "dynamodb job store ready")
