"""The dashboard's inference router panel: the router's own Prometheus endpoint, read and
summed up (requests, latency quantiles, batch sizes, queue depth).

The text is parsed by prometheus_client's parser; quantiles are read from the cumulative
histogram buckets (stoker.api.prometheus_scrape.histogram_quantile).
Requests per second are the browser's to compute: it has two readings and their times.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from stoker.api.prometheus_scrape import histogram_quantile, scrape

REQUEST_SECONDS = "stoker_router_request_seconds"
BATCH_SIZE = "stoker_router_batch_size"
QUEUE_DEPTH = "stoker_router_queue_depth"
REJECTIONS = "stoker_router_rejections_total"


class BatchBucket(BaseModel):
    le: float | None = Field(description="upper bound of the bucket; null for +Inf")
    count: int = Field(description="batches in this bucket (not cumulative)")


class RouterPanel(BaseModel):
    configured: bool = Field(description="false when no router metrics URL is set")
    read_at: float | None = Field(default=None, description="Unix time of the reading")
    requests_total: int = 0
    rejections_total: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    batches: list[BatchBucket] = Field(default_factory=list)
    queue_depth: dict[str, float] = Field(default_factory=dict, description="per model")


def summarise(text: str, read_at: float) -> RouterPanel:
    """The panel's figures from one scrape of the router's /metrics text."""
    latency: dict[float, float] = defaultdict(float)
    batches: dict[float, float] = defaultdict(float)
    requests = rejections = 0.0
    depth: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{REQUEST_SECONDS}_bucket":
                latency[float(sample.labels["le"])] += sample.value
            elif sample.name == f"{REQUEST_SECONDS}_count":
                requests += sample.value
            elif sample.name == f"{BATCH_SIZE}_bucket":
                batches[float(sample.labels["le"])] += sample.value
            elif sample.name == REJECTIONS:
                rejections += sample.value
            elif sample.name == QUEUE_DEPTH:
                depth[sample.labels.get("model", "")] = sample.value
    return RouterPanel(
        configured=True,
        read_at=read_at,
        requests_total=int(requests),
        rejections_total=int(rejections),
        latency_p50_s=histogram_quantile(0.5, latency),
        latency_p99_s=histogram_quantile(0.99, latency),
        batches=list(_per_bucket(batches)),
        queue_depth=depth,
    )


def _per_bucket(cumulative: Mapping[float, float]) -> Iterable[BatchBucket]:
    below = 0.0
    for bound in sorted(cumulative):
        count = cumulative[bound]
        yield BatchBucket(le=None if math.isinf(bound) else bound, count=int(count - below))
        below = count


class RouterMetricsSource:
    """Reads the router's /metrics over HTTP (`url`, set by the operator)."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._transport = transport

    async def panel(self) -> RouterPanel:
        text = await scrape(self.url, "router", transport=self._transport)
        return summarise(text, time.time())
