"""The dashboard's multi-model endpoint panel: the endpoint's own Prometheus endpoint
(`stoker endpoints serve`), read and summed up: requests, cache hit rate from the lookups
by tier, cold loads and their p50/p99 by source, evictions, what each tier holds.

A lookup served from memory is a hit; one that had to load from disk or the object store is
a cold load. Requests per second are the browser's to compute from two readings.
"""

from __future__ import annotations

import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from stoker.api.prometheus_scrape import histogram_quantile, scrape

REQUESTS = "stoker_endpoint_requests_total"
LOOKUPS = "stoker_endpoint_cache_lookups_total"
COLD_LOAD_SECONDS = "stoker_endpoint_cold_load_seconds"
LOAD_FAILURES = "stoker_endpoint_load_failures_total"
EVICTIONS = "stoker_endpoint_evictions_total"
RESIDENT_BYTES = "stoker_endpoint_resident_bytes"
RESIDENT_MODELS = "stoker_endpoint_resident_models"
REQUEST_SECONDS = "stoker_endpoint_request_seconds"
HIT_TIER = "memory"


class ColdLoads(BaseModel):
    source: str = Field(description="where the artifact came from: disk or store")
    count: int
    p50_s: float | None = None
    p99_s: float | None = None


class TierHolding(BaseModel):
    tier: str = Field(description="memory or disk")
    models: int
    bytes: int
    evictions: int = Field(description="entries evicted from this tier to make room")


class EndpointPanel(BaseModel):
    configured: bool = Field(description="false when no endpoint metrics URL is set")
    read_at: float | None = Field(default=None, description="Unix time of the reading")
    requests_total: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    lookups: dict[str, int] = Field(default_factory=dict, description="per tier found in")
    hit_rate: float | None = Field(
        default=None, description="share of lookups served from memory; null before any"
    )
    cold_loads: list[ColdLoads] = Field(default_factory=list, description="per source")
    load_failures_total: int = 0
    tiers: list[TierHolding] = Field(default_factory=list)


def summarise(text: str, read_at: float) -> EndpointPanel:
    """The panel's figures from one scrape of the endpoint's /metrics text."""
    requests = failures = 0.0
    latency: dict[float, float] = defaultdict(float)
    lookups: dict[str, float] = defaultdict(float)
    loads: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    load_counts: dict[str, float] = defaultdict(float)
    evictions: dict[str, float] = defaultdict(float)
    held_bytes: dict[str, float] = {}
    held_models: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == REQUESTS:
                requests += sample.value
            elif sample.name == f"{REQUEST_SECONDS}_bucket":
                latency[float(labels["le"])] += sample.value
            elif sample.name == LOOKUPS:
                lookups[labels.get("tier", "")] += sample.value
            elif sample.name == f"{COLD_LOAD_SECONDS}_bucket":
                loads[labels.get("source", "")][float(labels["le"])] += sample.value
            elif sample.name == f"{COLD_LOAD_SECONDS}_count":
                load_counts[labels.get("source", "")] += sample.value
            elif sample.name == LOAD_FAILURES:
                failures += sample.value
            elif sample.name == EVICTIONS:
                evictions[labels.get("tier", "")] += sample.value
            elif sample.name == RESIDENT_BYTES:
                held_bytes[labels.get("tier", "")] = sample.value
            elif sample.name == RESIDENT_MODELS:
                held_models[labels.get("tier", "")] = sample.value
    looked_up = sum(lookups.values())
    return EndpointPanel(
        configured=True,
        read_at=read_at,
        requests_total=int(requests),
        latency_p50_s=histogram_quantile(0.5, latency),
        latency_p99_s=histogram_quantile(0.99, latency),
        lookups={tier: int(count) for tier, count in sorted(lookups.items())},
        hit_rate=lookups.get(HIT_TIER, 0.0) / looked_up if looked_up else None,
        cold_loads=[
            ColdLoads(
                source=source,
                count=int(count),
                p50_s=histogram_quantile(0.5, loads[source]),
                p99_s=histogram_quantile(0.99, loads[source]),
            )
            for source, count in sorted(load_counts.items())
        ],
        load_failures_total=int(failures),
        tiers=[
            TierHolding(
                tier=tier,
                models=int(held_models.get(tier, 0)),
                bytes=int(held_bytes.get(tier, 0)),
                evictions=int(evictions.get(tier, 0)),
            )
            for tier in sorted(held_bytes.keys() | held_models.keys() | evictions.keys())
        ],
    )


class EndpointMetricsSource:
    """Reads the multi-model endpoint's /metrics over HTTP (`url`, set by the operator)."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._transport = transport

    async def panel(self) -> EndpointPanel:
        text = await scrape(self.url, "endpoint", transport=self._transport)
        return summarise(text, time.time())
