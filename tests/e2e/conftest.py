"""Fixtures of the end-to-end tier: a webhook receiver, a DynamoDB Local of its own per module
and the stack's settings.

The stack itself (simulator and service processes) is built by each test module, because
the fault run and the kill run need different sizes and restarts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from stoker.app.runtime import build_bus, build_store
from stoker.ports.bus import EventBus
from stoker.ports.store import JobStore, Store
from tests.conftest import own_dynamodb_local
from tests.e2e.receiver import WebhookReceiver
from tests.e2e.stack import Stack, StackConfig
from tests.e2e.workload import (
    CAPPED_TYPE,
    FAILURE_RULES,
    FALLBACK_TYPE,
    UNCAPPED_TYPE,
    Verdict,
    verify,
)
from tests.support.waiting import wait_quiet, wait_until

# The uncapped type's quota is small: the launcher admits all its jobs at once, so their
# CreateTrainingJob calls meet ResourceLimitExceeded however fast or slow the machine is.
QUOTA = {CAPPED_TYPE: 24, UNCAPPED_TYPE: 4, FALLBACK_TYPE: 16}

FAULTS: dict[str, Any] = {
    "seed": 7,
    # 600 simulated seconds pass per wall second: startup 0.05 s, training 0.1-0.8 s.
    "speedup": 600,
    "startup_s": 30,
    "duration": {"kind": "uniform", "low_s": 60, "high_s": 480},
    "capacity_error_rate": 0.1,
    "algorithm_error_rate": 0.05,
    "instance_quota": QUOTA,
    # The monitor's bucket (STOKER_MONITOR_API_RATE_PER_S below) starts above these rates,
    # so it is throttled and must slow down; creates are throttled too.
    "throttle_rps_by_operation": {
        "ListTrainingJobs": 5,
        "DescribeTrainingJob": 10,
        "CreateTrainingJob": 60,
    },
}

SETTINGS: dict[str, str] = {
    "STOKER_INSTANCE_CAPS": json.dumps({CAPPED_TYPE: QUOTA[CAPPED_TYPE]}),
    "STOKER_MONITOR_POLL_INTERVAL_S": "0.5",
    "STOKER_MONITOR_API_RATE_PER_S": "40",
    "STOKER_RETRY_INITIAL_DELAY_S": "0.2",
    "STOKER_RETRY_MULTIPLIER": "2",
    "STOKER_RETRY_MAX_DELAY_S": "1",
    "STOKER_RETRY_JITTER": "0.2",
    "STOKER_RETRY_MAX_ATTEMPTS": "3",
    "STOKER_FAILURE_RULES": json.dumps(FAILURE_RULES),
}


@pytest.fixture(scope="module")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh DynamoDB Local per module, whatever the session uses.

    DynamoDB Local's stream emulation scans every stream record the server ever wrote on
    each write (docs/bus.md), so after the contract tests' 10,000-message runs a shared
    server made these runs several times slower. DynamoDB itself has no such cost.
    """
    with own_dynamodb_local(tmp_path_factory) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver every job of the module notifies (the global default target)."""
    with WebhookReceiver() as hook:
        yield hook


@contextmanager
def started_stack(
    folder: Path, kafka_bootstrap: str, dynamodb_endpoint: str, receiver: WebhookReceiver
) -> Iterator[Stack]:
    """The simulator and one process per service, all notifying `receiver`."""
    config = StackConfig(faults=FAULTS, settings=SETTINGS, webhook_url=receiver.url)
    with Stack(folder, kafka_bootstrap, dynamodb_endpoint, config) as stack:
        stack.start_all()
        yield stack


@asynccontextmanager
async def adapters(stack: Stack) -> AsyncIterator[tuple[Store, EventBus]]:
    """The test's own view of the run: its job store and its (prefixed) Kafka bus."""
    settings = stack.settings()
    store = build_store(settings)
    bus = build_bus(settings)
    await store.start()
    await bus.start()
    try:
        yield store, bus
    finally:
        await bus.close()
        await store.close()


async def notified_verdict(
    store: JobStore,
    ids: list[str],
    stack: Stack,
    receiver: WebhookReceiver,
    *,
    timeout_s: float = 120.0,
    count_deliveries: bool = True,
) -> Verdict:
    """Once the jobs are terminal: wait for a notification of each, leave room for a wrongly
    repeated one to arrive, then check every invariant of the run (`verify`).
    count_deliveries: hold each job to one delivery too (a run with kills may repeat one)."""
    await wait_until(
        lambda: len(receiver.keys_per_job().keys() & set(ids)) >= len(ids),
        timeout_s,
        0.1,
        what="a notification for every job",
    )
    await wait_quiet(lambda: len(receiver.deliveries), quiet_s=2.0, timeout_s=60)
    return await verify(
        store,
        ids,
        stack.sim_stats(),
        receiver.keys_per_job(),
        receiver.states(),
        deliveries_per_job=receiver.deliveries_per_job() if count_deliveries else None,
    )
