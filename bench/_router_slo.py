"""Throughput at a latency objective and where the tail goes, for the router bench.

Every step is one constant-rate open-loop vegeta attack (bench/_vegeta.py) from its own
process. For each objective the search finds the highest rate whose p99 meets it, going
up from a first guess when it passes and down (to 1 q/s) when it fails, then bisecting.
Results are cached by rate, so the objectives share their steps.

Stoker's replies carry a `Server-Timing` header (stoker.inference.router.timing), so each
request's latency splits into the router's phases and the rest (`client`: the client,
the kernel's loopback and the HTTP server before the app). The breakdown of a percentile
is the mean of each phase over the requests whose latency ranks around that percentile:
the phases of the requests that make the tail, which add up to their latency.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from _vegeta import Attack, percentile
from stoker.inference.router.timing import PHASES, TOTAL, parse_server_timing

BREAKDOWN_PERCENTILES = (50.0, 90.0, 99.0, 100.0)
CLIENT = "client"
"""Latency outside the app: the client process, loopback, and uvicorn before the app."""


@dataclass(frozen=True)
class Step:
    """One measured rate: what the client saw and, where the server sent them, the phases."""

    label: str
    attack: Attack
    phases: list[dict[str, float]]
    """Per successful request with a Server-Timing header: ms per phase, plus `client`."""
    latencies: list[float]
    """Latency (ms) of the same requests, in the same order."""

    @property
    def rate(self) -> float:
        return self.attack.rate

    def p99(self) -> float:
        return self.attack.percentile_ms(99)

    def meets(self, objective_ms: float) -> bool:
        """Every request answered 200 and p99 under the objective."""
        return self.attack.ok == self.attack.sent and self.p99() < objective_ms

    def phase_percentile(self, name: str, q: float) -> float:
        return percentile(sorted(p[name] for p in self.phases), q)

    def router_share_p99(self) -> float:
        """End-to-end p99 minus the model's own p99 run time (ms): what the router adds."""
        if not self.phases:
            return math.nan
        return self.p99() - self.phase_percentile("model", 99)

    def breakdown(self, q: float) -> dict[str, float]:
        """Mean ms per phase over the requests ranked around percentile `q` (±0.5 %)."""
        if not self.phases:
            return {}
        order = sorted(range(len(self.latencies)), key=self.latencies.__getitem__)
        n = len(order)
        centre = max(1, math.ceil(q / 100.0 * n)) - 1
        half = max(0, round(0.005 * n))
        chosen = order[max(0, centre - half) : min(n, centre + half + 1)]
        names = (*PHASES, CLIENT)
        out = {name: statistics.fmean(self.phases[i][name] for i in chosen) for name in names}
        out["latency"] = statistics.fmean(self.latencies[i] for i in chosen)
        return out


def step_from(label: str, attack: Attack) -> Step:
    phases, latencies = [], []
    for hit in attack.hits:
        if hit.status != 200 or not hit.server_timing:
            continue
        timing = parse_server_timing(hit.server_timing)
        if TOTAL not in timing or any(name not in timing for name in PHASES):
            continue
        timing[CLIENT] = hit.latency_ms - timing[TOTAL]
        phases.append(timing)
        latencies.append(hit.latency_ms)
    return Step(label, attack, phases, latencies)


class RateSearch:
    """Measured steps of one server, cached by rate; finds the best rate per objective."""

    def __init__(self, measure: Callable[[int], Step], *, max_rate: int) -> None:
        self._measure = measure
        self._max_rate = max_rate
        self.steps: dict[int, Step] = {}

    def step(self, rate: int) -> Step:
        if rate not in self.steps:
            self.steps[rate] = self._measure(rate)
        return self.steps[rate]

    def passes(self, rate: int, objective_ms: float) -> bool:
        return self.step(rate).meets(objective_ms)

    def best_rate(self, objective_ms: float, start: int, bisections: int = 3) -> int:
        """Highest rate whose p99 meets `objective_ms` (0 if not even 1 q/s does).

        Up by x1.5 from `start` while it passes, or down by /2 to 1 q/s while it fails;
        then `bisections` halvings of the gap between the last pass and the first fail."""
        start = max(1, min(start, self._max_rate))
        good, bad = 0, 0
        rate = start
        if self.passes(rate, objective_ms):
            good = rate
            while good < self._max_rate:
                rate = min(self._max_rate, max(good + 1, round(good * 1.5)))
                if not self.passes(rate, objective_ms):
                    bad = rate
                    break
                good = rate
        else:
            bad = rate
            while bad > 1:
                rate = max(1, bad // 2)
                if self.passes(rate, objective_ms):
                    good = rate
                    break
                bad = rate
        if not good or not bad:
            return good
        for _ in range(bisections):
            mid = (good + bad) // 2
            if mid in (good, bad):
                break
            if self.passes(mid, objective_ms):
                good = mid
            else:
                bad = mid
        # Every measured rate counts: a higher one that passed in another objective's
        # search is as real a result as the bisection's.
        return max(
            [good] + [r for r, s in self.steps.items() if s.meets(objective_ms) and r > good]
        )


def steps_table(title: str, steps: Sequence[Step]) -> Table:
    table = Table(title=title)
    for column in (
        "rate/s", "sent", "ok", "p50 ms", "p99 ms", "max ms", "model p99", "router share p99",
        "client CPU",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    table.add_column("other statuses")
    for s in sorted(steps, key=lambda s: s.rate):
        a = s.attack
        others = {k: v for k, v in a.statuses().items() if k != "200"}
        model = f"{s.phase_percentile('model', 99):.2f}" if s.phases else "-"
        share = f"{s.router_share_p99():.2f}" if s.phases else "-"
        table.add_row(
            f"{s.rate:.0f}", str(a.sent), str(a.ok), f"{a.percentile_ms(50):.2f}",
            f"{s.p99():.2f}", f"{a.percentile_ms(100):.2f}", model, share,
            f"{a.client_cpu_share * 100:.0f} %",
            ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "-",
        )  # fmt: skip
    return table


def breakdown_table(title: str, steps: Sequence[Step]) -> Table:
    """Per rate and percentile: the latency and the mean of each phase of those requests."""
    table = Table(title=title)
    names = ("tokenize", "queue", "batch run", "model", "response", "client")
    for column in ("rate/s", "pct", "latency", *names, "router share"):
        table.add_column(column, justify="right")
    for s in sorted(steps, key=lambda s: s.rate):
        for q in BREAKDOWN_PERCENTILES:
            b = s.breakdown(q)
            if not b:
                continue
            # batch run: formed to finished, hand-offs included; response: back on the
            # loop to the response's first byte, plus the app's own request handling.
            batch_run = b["dispatch"] + b["model"] + b["return"]
            response = b["reply"] + b["http"]
            table.add_row(
                f"{s.rate:.0f}", "max" if q == 100 else f"p{q:g}", f"{b['latency']:.2f}",
                f"{b['tok']:.2f}", f"{b['queue']:.2f}", f"{batch_run:.2f}", f"{b['model']:.2f}",
                f"{response:.2f}", f"{b['client']:.2f}", f"{b['latency'] - b['model']:.2f}",
            )  # fmt: skip
    return table
