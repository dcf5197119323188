"""The Prometheus metrics of a stoker service process, in one registry per process.

Every service in a process counts into `REGISTRY`, which the process serves on its metrics
endpoint (`stoker.app.metrics_endpoint`). docs/observability.md lists each metric, its labels
and its meaning; a test keeps that list, this module and deploy/grafana equal.

Labels are bounded sets only (topics, groups, operations, outcomes, channel kinds, error
classes): never a job id, an owner, a team or a free-text reason. Counting stays off the
launch path's costs: a labelled child is made once per label set and kept (`labelled`), and
the consumer counts records a batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Described:
    """One metric of stoker's: its name as PromQL sees it, kind, labels and meaning."""

    name: str
    kind: str
    labels: tuple[str, ...]
    meaning: str


CATALOGUE: dict[str, Described] = {}
"""Every metric stoker declares, by name (counters with their `_total`)."""


def _counter(name: str, meaning: str, labels: tuple[str, ...] = ()) -> Counter:
    CATALOGUE[name] = Described(name, "counter", labels, meaning)
    return Counter(name, meaning, labels, registry=REGISTRY)


def _gauge(name: str, meaning: str, labels: tuple[str, ...]) -> Gauge:
    CATALOGUE[name] = Described(name, "gauge", labels, meaning)
    return Gauge(name, meaning, labels, registry=REGISTRY)


def _histogram(
    name: str, meaning: str, labels: tuple[str, ...], buckets: tuple[float, ...]
) -> Histogram:
    CATALOGUE[name] = Described(name, "histogram", labels, meaning)
    return Histogram(name, meaning, labels, buckets=buckets, registry=REGISTRY)


# Store calls: a SQLite write is about a millisecond; a DynamoDB call tens of them.
_STORE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

CONSUMER_LAG = _gauge(
    "stoker_consumer_lag_records",
    "Records of a partition after the consumer group's position, as last seen by the member "
    "holding the partition in this process (not reported on DynamoDB Streams).",
    ("group", "topic", "partition"),
)
EVENTS_HANDLED = _counter(
    "stoker_events_handled_total",
    "Records a consumer group handled successfully.",
    ("group", "topic"),
)
EVENTS_DEAD_LETTERED = _counter(
    "stoker_events_dead_lettered_total",
    "Records a consumer group wrote to the dead-letter topic, by why (decode, schema, "
    "unknown-type, handler).",
    ("group", "topic", "kind"),
)
JOBS_SUBMITTED = _counter(
    "stoker_jobs_submitted_total",
    "Jobs created (a submission of an existing job id is not counted).",
)
JOBS_ENDED = _counter(
    "stoker_jobs_ended_total",
    "Jobs that reached a terminal status: Completed, Failed or Stopped.",
    ("status",),
)
LAUNCHES = _counter(
    "stoker_launches_total",
    "Launch attempts by outcome: launched (the backend took it, or had it already), "
    "deferred (refused for now: capacity or a quota, offered again later), failed (the "
    "attempt failed at launch).",
    ("outcome",),
)
SAGEMAKER_CALLS = _counter(
    "stoker_sagemaker_calls_total",
    "SageMaker API calls by operation and outcome: ok, or the stoker error the answer became "
    "(Throttled, ResourceLimitExceeded, InsufficientCapacity, ServiceUnavailable, ...).",
    ("operation", "outcome"),
)
SAGEMAKER_THROTTLES = _counter(
    "stoker_sagemaker_throttles_total",
    "SageMaker API calls refused for throttling.",
    ("operation",),
)
RETRIES = _counter(
    "stoker_retries_total",
    "Job attempts that failed and were scheduled again, by the failure rule's reason (its "
    "failure code, or the rule matched).",
    ("reason",),
)
NOTIFICATIONS = _counter(
    "stoker_notifications_total",
    "Notifications by channel kind (slack, email, webhook, console, file) and outcome "
    "(sent, failed).",
    ("channel", "outcome"),
)
STORE_SECONDS = _histogram(
    "stoker_store_seconds",
    "Time of one store call as its caller waits for it (SQLite: queueing for the file's "
    "reader or writer included; DynamoDB: one call, its retries included), by store (sqlite "
    "store, sqlite log, notification ledger, dynamodb) and operation.",
    ("store", "operation"),
    _STORE_BUCKETS,
)

METRIC_NAMES = frozenset(CATALOGUE)
"""The names stoker itself exposes (a histogram's samples add `_bucket`, `_sum`, `_count`)."""


T = TypeVar("T")

_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def labelled(metric: Counter | Histogram, *values: str) -> Any:
    """`metric.labels(*values)`, made once per process and label set and kept (the sets are
    bounded): counting on a hot path is then one dictionary lookup and one add. Not for
    gauges whose children are removed (`CONSUMER_LAG`)."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


class StoreTimer:
    """Times one store's calls into `stoker_store_seconds`: a call costs two clock reads and
    one observation."""

    def __init__(self, store: str) -> None:
        self._store = store

    async def timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.observe(operation, time.perf_counter() - started)

    def observe(self, operation: str, seconds: float) -> None:
        labelled(STORE_SECONDS, self._store, operation).observe(seconds)


def render() -> bytes:
    """The registry in Prometheus's text exposition format."""
    return generate_latest(REGISTRY)
