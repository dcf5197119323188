"""Prometheus metrics of the endpoint, in a registry of its own (one per endpoint).

No label carries a model's name: a fleet of thousands of models would make thousands of
series per metric; per-model detail is in the logs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class FleetMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "stoker_endpoint_requests_total",
            "Invocations, by route (runtime, container) and outcome (HTTP status).",
            ["route", "status"],
            registry=self.registry,
        )
        self.lookups = Counter(
            "stoker_endpoint_cache_lookups_total",
            "Where an invocation found its model: memory, disk (a cold load from the disk "
            "tier) or store (a cold load from the object store).",
            ["tier"],
            registry=self.registry,
        )
        self.cold_load_seconds = Histogram(
            "stoker_endpoint_cold_load_seconds",
            "Time to make a model resident, by where its artifact came from (disk, store).",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.load_failures = Counter(
            "stoker_endpoint_load_failures_total",
            "Loads that failed: a corrupt artifact, an unreadable store.",
            registry=self.registry,
        )
        self.evictions = Counter(
            "stoker_endpoint_evictions_total",
            "Entries evicted to make room, per tier (memory, disk).",
            ["tier"],
            registry=self.registry,
        )
        self.resident_bytes = Gauge(
            "stoker_endpoint_resident_bytes",
            "Bytes held per tier (memory: serialised models; disk: artifact files).",
            ["tier"],
            registry=self.registry,
        )
        self.resident_models = Gauge(
            "stoker_endpoint_resident_models",
            "Models held per tier.",
            ["tier"],
            registry=self.registry,
        )
        self.predict_seconds = Histogram(
            "stoker_endpoint_predict_seconds",
            "Time of the model's own predict in its worker process.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "stoker_endpoint_request_seconds",
            "Time from a request's arrival in the engine to its answer, by lookup tier.",
            ["tier"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def tier_size(self, tier: str, models: int, size_bytes: int) -> None:
        self.resident_bytes.labels(tier).set(size_bytes)
        self.resident_models.labels(tier).set(models)

    def render(self) -> bytes:
        return generate_latest(self.registry)
