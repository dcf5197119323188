"""The app's web views (Faust's web server) and its Prometheus metrics.

    GET /duplicates/windows/   the tumbling windows this worker holds, per product type
    GET /duplicates/metrics    Prometheus text: the current windows and the stream's counters

Both need `Authorization: Bearer <token>` (the same tokens as the router). A worker holds the
windows of the pairs topic's partitions assigned to it, so with several workers each shows
its share; Prometheus sums the gauges over workers (`sum by (product_type)`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stoker.core.auth import Unauthenticated
from stoker.ports.auth import Authenticator
from stoker.stream.state import DuplicateApp


@dataclass(frozen=True, slots=True)
class WindowCount:
    product_type: str
    start: float
    end: float
    pairs: int
    duplicates: int

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.pairs if self.pairs else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "product_type": self.product_type,
            "start": self.start,
            "end": self.end,
            "pairs": self.pairs,
            "duplicates": self.duplicates,
            "duplicate_rate": round(self.duplicate_rate, 6),
        }


def window_counts(
    pairs: Iterable[tuple[Any, int]], duplicates: Mapping[Any, int]
) -> list[WindowCount]:
    """Per product type and window, summed over the partitions this worker holds.

    Table keys are `(f"{product_type}@{partition}", (start, end))`: each partition counts
    its own pairs, so a key never lives in two changelog partitions."""
    totals: dict[tuple[str, float, float], list[int]] = defaultdict(lambda: [0, 0])
    for (key, (start, end)), count in pairs:
        kind = str(key).rpartition("@")[0]
        row = totals[(kind, float(start), float(end))]
        row[0] += int(count)
        row[1] += int(duplicates.get((key, (start, end)), 0))
    return [
        WindowCount(kind, start, end, n, d) for (kind, start, end), (n, d) in sorted(totals.items())
    ]


def current_windows(built: DuplicateApp) -> list[WindowCount]:
    pairs = built.pairs_per_window.table
    duplicates = built.duplicates_per_window.table
    return window_counts(list(pairs.items()), dict(duplicates.items()))


class _Collector(Collector):
    def __init__(self, built: DuplicateApp) -> None:
        self._built = built

    def collect(self) -> Iterator[Metric]:
        latest: dict[str, WindowCount] = {}
        for row in current_windows(self._built):
            if row.product_type not in latest or row.start > latest[row.product_type].start:
                latest[row.product_type] = row
        pairs = GaugeMetricFamily(
            "stoker_stream_window_pairs",
            "pairs in the latest tumbling window, per product type (this worker's partitions)",
            labels=["product_type"],
        )
        dups = GaugeMetricFamily(
            "stoker_stream_window_duplicates",
            "pairs scored as duplicates in the latest window, per product type",
            labels=["product_type"],
        )
        for kind, row in sorted(latest.items()):
            pairs.add_metric([kind], row.pairs)
            dups.add_metric([kind], row.duplicates)
        yield pairs
        yield dups
        counters = self._built.counters
        handled = CounterMetricFamily(
            "stoker_stream_pairs", "pairs handled by this worker", labels=["outcome"]
        )
        handled.add_metric(["scored"], counters.scored)
        handled.add_metric(["served_from_table"], counters.served_from_table)
        handled.add_metric(["dead_lettered"], counters.dead_lettered)
        yield handled


def register_views(built: DuplicateApp, authenticator: Authenticator | None) -> None:
    """Add the views to the app's web server, behind bearer tokens."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(built))
    app = built.app

    async def authorized(view: View, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if authenticator is None or scheme.lower() != "bearer" or not credential:
            return view.json({"detail": "a bearer token is required"}, status=401)
        try:
            await authenticator.authenticate(credential.strip())
        except Unauthenticated:
            return view.json({"detail": "the bearer token is not valid"}, status=401)
        return None

    @app.page("/duplicates/windows/")
    async def windows(view: View, request: Request) -> Response:
        denied = await authorized(view, request)
        if denied is not None:
            return denied
        return view.json(
            {
                "window_s": built.settings.window_s,
                "windows": [row.to_json() for row in current_windows(built)],
            }
        )

    @app.page("/duplicates/metrics")
    async def metrics(view: View, request: Request) -> Response:
        denied = await authorized(view, request)
        if denied is not None:
            return denied
        return view.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")
