"""The Prometheus metrics of a stoker service process, in one registry per process.

Every service in a process counts into `REGISTRY`, which the process serves on its metrics
endpoint (`stoker.app.metrics_endpoint`). docs/observability.md lists each metric, its labels
and its meaning; a test keeps that list, this module and deploy/grafana equal.

Labels are bounded sets only (topics, groups, operations, outcomes, channel kinds, error
classes): never a job id, an owner, a team or a free-text reason. Counting stays off the
launch path's costs: callers keep the labelled child they count into (`labels()` once), and
the consumer counts records a batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Store calls: a SQLite write is about a millisecond; a DynamoDB call tens of them.
_STORE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

CONSUMER_LAG = Gauge(
    "stoker_consumer_lag_records",
    "Records of a partition after the consumer group's position, as last seen by the member "
    "holding the partition in this process (not reported on DynamoDB Streams).",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
EVENTS_HANDLED = Counter(
    "stoker_events_handled_total",
    "Records a consumer group handled successfully.",
    ["group", "topic"],
    registry=REGISTRY,
)
EVENTS_DEAD_LETTERED = Counter(
    "stoker_events_dead_lettered_total",
    "Records a consumer group wrote to the dead-letter topic, by why (decode, schema, "
    "unknown-type, handler).",
    ["group", "topic", "kind"],
    registry=REGISTRY,
)
JOBS_SUBMITTED = Counter(
    "stoker_jobs_submitted_total",
    "Jobs created (a submission of an existing job id is not counted).",
    registry=REGISTRY,
)
JOBS_ENDED = Counter(
    "stoker_jobs_ended_total",
    "Jobs that reached a terminal status: Completed, Failed or Stopped.",
    ["status"],
    registry=REGISTRY,
)
LAUNCHES = Counter(
    "stoker_launches_total",
    "Launch attempts by outcome: launched (the backend took it, or had it already), "
    "deferred (refused for now: capacity or a quota, offered again later), failed (the "
    "attempt failed at launch).",
    ["outcome"],
    registry=REGISTRY,
)
SAGEMAKER_CALLS = Counter(
    "stoker_sagemaker_calls_total",
    "SageMaker API calls by operation and outcome: ok, or the stoker error the answer became "
    "(Throttled, ResourceLimitExceeded, InsufficientCapacity, ServiceUnavailable, ...).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
SAGEMAKER_THROTTLES = Counter(
    "stoker_sagemaker_throttles_total",
    "SageMaker API calls refused for throttling.",
    ["operation"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "stoker_retries_total",
    "Job attempts that failed and were scheduled again, by the failure rule's reason (its "
    "failure code, or the rule matched).",
    ["reason"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "stoker_notifications_total",
    "Notifications by channel kind (slack, email, webhook, console, file) and outcome "
    "(sent, failed).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
STORE_SECONDS = Histogram(
    "stoker_store_seconds",
    "Time of one store call (SQLite: on its reader or writer thread; DynamoDB: one request), "
    "by store and operation.",
    ["store", "operation"],
    buckets=_STORE_BUCKETS,
    registry=REGISTRY,
)

METRIC_NAMES = frozenset(
    {
        "stoker_consumer_lag_records",
        "stoker_events_handled_total",
        "stoker_events_dead_lettered_total",
        "stoker_jobs_submitted_total",
        "stoker_jobs_ended_total",
        "stoker_launches_total",
        "stoker_sagemaker_calls_total",
        "stoker_sagemaker_throttles_total",
        "stoker_retries_total",
        "stoker_notifications_total",
        "stoker_store_seconds",
    }
)
"""The names stoker itself exposes (sample names add `_bucket`, `_sum`, `_count`, `_created`)."""


T = TypeVar("T")


class StoreTimer:
    """Times one store's calls into `stoker_store_seconds`, keeping a labelled child per
    operation so that a call costs two clock reads and one observation."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._children: dict[str, Any] = {}

    async def timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.observe(operation, time.perf_counter() - started)

    def observe(self, operation: str, seconds: float) -> None:
        child = self._children.get(operation)
        if child is None:
            child = self._children[operation] = STORE_SECONDS.labels(self._store, operation)
        child.observe(seconds)


def render() -> bytes:
    """The registry in Prometheus's text exposition format."""
    return generate_latest(REGISTRY)
