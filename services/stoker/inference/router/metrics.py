"""Prometheus metrics of the router, in a registry of its own (one per router instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stoker.inference.router.policy import Priority

# Sub-millisecond resolution where the 10 ms real-time objective lives.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RouterMetrics:
    """Queue time, batch sizes, latency per bucket, rejections, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._queue_seconds = Histogram(
            "stoker_router_queue_seconds",
            "Time a request waited in its queue before its batch was formed.",
            ["model", "priority"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            "stoker_router_batch_size",
            "Real requests per batch run.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._padded_rows = Counter(
            "stoker_router_padded_rows_total",
            "Rows added to reach an allowed static batch size (wasted work).",
            ["model"],
            registry=self.registry,
        )
        self._run_seconds = Histogram(
            "stoker_router_batch_run_seconds",
            "Model run time of one batch, per sequence bucket.",
            ["model", "bucket"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._latency = Histogram(
            "stoker_router_request_seconds",
            "Time from arrival in the router to the reply, per sequence bucket.",
            ["model", "bucket"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._rejections = Counter(
            "stoker_router_rejections_total",
            "Requests refused or dropped: queue-full, draining, deadline.",
            ["model", "reason"],
            registry=self.registry,
        )
        self._depth = Gauge(
            "stoker_router_queue_depth",
            "Requests waiting, per model.",
            ["model"],
            registry=self.registry,
        )
        self._truncated = Counter(
            "stoker_router_truncated_total",
            "Inputs longer than the largest bucket, cut to fit.",
            ["model"],
            registry=self.registry,
        )

    def queued_for(self, model: str, priority: Priority, seconds: float) -> None:
        self._queue_seconds.labels(model, priority.name.lower()).observe(seconds)

    def batch_ran(self, model: str, bucket: int, size: int, real: int, seconds: float) -> None:
        self._batch_size.labels(model).observe(real)
        if size > real:
            self._padded_rows.labels(model).inc(size - real)
        self._run_seconds.labels(model, str(bucket)).observe(seconds)

    def served(self, model: str, bucket: int, seconds: float) -> None:
        self._latency.labels(model, str(bucket)).observe(seconds)

    def rejected(self, model: str, reason: str) -> None:
        self._rejections.labels(model, reason).inc()

    def queue_depth(self, model: str, depth: int) -> None:
        self._depth.labels(model).set(depth)

    def truncated(self, model: str) -> None:
        self._truncated.labels(model).inc()

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        return generate_latest(self.registry)
