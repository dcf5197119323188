"""What the dashboard's inference panels share: reading a Prometheus endpoint over HTTP and
a quantile from a histogram's cumulative buckets, as Prometheus's `histogram_quantile` does
(linear within the bucket)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import httpx

from stoker.core.errors import InfrastructureUnavailable

FETCH_TIMEOUT_S = 2.0


def histogram_quantile(quantile: float, cumulative: Mapping[float, float]) -> float | None:
    """The `quantile` of a histogram given as {upper bound: cumulative count}."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the open bucket: its lower edge is all that is known
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


async def scrape(url: str, what: str, *, transport: httpx.AsyncBaseTransport | None = None) -> str:
    """The /metrics text at `url`; InfrastructureUnavailable naming `what` and the URL when
    it does not answer (or answers with an error status)."""
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, transport=transport) as client:
            response = await client.get(url)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise InfrastructureUnavailable(
            f"{what} metrics at {url} unreachable: {type(exc).__name__}"
        ) from exc
    return response.text
