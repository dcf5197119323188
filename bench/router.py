"""Router benchmark: raw model ceiling, router throughput, the tail, throughput at SLO.

One run, one model, this machine. Reproduce with:

    .venv/bin/pip install -e '.[all,inference,bench]'
    .venv/bin/python bench/router.py            # about 20 minutes on 2 cores

The HTTP load comes from vegeta (Go, its own process; built once with `go install` into
~/.cache/stoker/bench-tools), constant-rate open loop, its CPU use reported per step.

Figures printed (see docs/router.md for recorded numbers):
1. raw backend throughput of the intent model at each static batch size (the ceiling)
   against the router's sustained throughput (in process, saturated), measured turn about
   in rounds (median ratio); target >= 0.95;
2. the tail: from 1 q/s to half the model's batch-size-1 rate, stoker's p99 over HTTP on
   loopback with its latency breakdown per percentile (tokenize, queue wait, batch run,
   response, client) from the router's Server-Timing header; target: the router's share
   of p99 (p99 minus the model's p99 run time) under 3 ms at every rate;
3. throughput at SLO: for each p99 objective (10, 25, 50, 100 ms) the highest rate that
   meets it, searched up and down (to 1 q/s), for stoker and for Ray Serve
   (`@serve.batch`) serving the same model object, the two turn about in rounds; target
   stoker >= 2 x Ray Serve in every round.
The streaming duplicate-detection figure is `bench/stream.py`'s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from _router_servers import ray_server, stoker_server
from _router_slo import RateSearch, Step, breakdown_table, step_from, steps_table
from _vegeta import VEGETA_VERSION, attack, ensure_vegeta
from stoker.app.inference_registry import load_models
from stoker.cli.router import build_router
from stoker.inference.router.models import ModelSet
from stoker.inference.router.router import config_for
from stoker.ports.inference import ModelBackend, Preprocessor, TokenizedInput

REPO = Path(__file__).resolve().parents[1]
SLOS_MS = (10.0, 25.0, 50.0, 100.0)
# Wide enough for the breakdown tables when the output goes to a file.
console = Console(width=150)

# Real-time queries of up to 16 tokens (the intent objective's workload).
QUERIES = (
    "red running shoes for men size ten wide",
    "where is my order from last tuesday",
    "cancel my streaming subscription before renewal",
    "usb c charger sixty five watt for laptop",
    "how do i return a broken blender",
    "gift ideas for dad who likes fishing",
    "noise cancelling headphones with long battery life",
    "kids bike with training wheels and basket",
    "change the delivery address of my parcel",
    "organic green tea bags one hundred count",
    "adjustable aluminium laptop stand for desk",
    "is this winter jacket waterproof or not",
)


@dataclass
class Report:
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        name: str,
        measured: float,
        against: float,
        target: float,
        unit: str,
        *,
        ratio: float | None = None,
    ) -> None:
        """`ratio` when it is not measured / against (a median of paired rounds)."""
        if ratio is None:
            # A peer (or ceiling) of zero leaves nothing to divide by: any positive figure
            # beats it.
            ratio = measured / against if against > 0 else (float("inf") if measured > 0 else 0.0)
        if math.isnan(ratio):
            verdict = "[yellow]undefined: neither met it[/yellow]"
        else:
            verdict = "[green]met[/green]" if ratio >= target else "[red]missed[/red]"
        self.rows.append(
            (name, f"{measured:,.0f} {unit}", f"{against:,.0f} {unit}", f"{ratio:.2f}",
             f">= {target:.2f} {verdict}")
        )  # fmt: skip
        self.figures[name] = {"measured": measured, "against": against, "ratio": ratio}

    def add_upper(self, name: str, measured: float, limit: float, unit: str) -> None:
        """A figure that must stay under `limit` (no peer)."""
        verdict = "[green]met[/green]" if measured < limit else "[red]missed[/red]"
        self.rows.append(
            (name, f"{measured:.2f} {unit}", "-", "-", f"< {limit:g} {unit} {verdict}")
        )
        self.figures[name] = {"measured": measured, "limit": limit}


# ---------------------------------------------------------------- raw ceiling


def raw_throughput(
    backend: ModelBackend,
    preprocessor: Preprocessor,
    inputs: Sequence[TokenizedInput],
    *,
    batch_size: int,
    seq_len: int,
    seconds: float,
    threads: int,
) -> tuple[float, float]:
    """Rows/s and mean seconds per run of `backend.run` on full, pre-padded batches, with
    `threads` callers at once (one per replica: what the backend can do on this machine)."""
    rows = [inputs[i % len(inputs)] for i in range(batch_size)]
    batch = preprocessor.pad(rows, batch_size=batch_size, seq_len=seq_len)
    backend.run(batch)

    def loop(stop_at: float) -> tuple[int, float]:
        runs, busy = 0, 0.0
        while time.perf_counter() < stop_at or runs < 2:
            t0 = time.perf_counter()
            backend.run(batch)
            busy += time.perf_counter() - t0
            runs += 1
        return runs, busy

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(loop, [start + seconds] * threads))
    elapsed = time.perf_counter() - start
    runs = sum(r for r, _ in results)
    return runs * batch_size / elapsed, sum(b for _, b in results) / runs


@dataclass(frozen=True)
class Ceiling:
    rate: float
    """Raw rows/s of the input mix, each bucket at its best batch size."""
    run_s: dict[int, float]
    """Seconds per run, per batch size, in the mix's main bucket."""
    best_size: dict[int, int]
    """Best batch size per bucket."""
    by_bucket: dict[int, list[TokenizedInput]]


def ceiling(
    name: str, models: ModelSet, inputs: Sequence[TokenizedInput], seconds: float
) -> Ceiling:
    """Raw rows/s for this input mix at the best batch size; per-size run times (s)."""
    backend = models.backends[name]
    cfg = config_for(backend)
    buckets: dict[int, list[TokenizedInput]] = {}
    for item in inputs:
        buckets.setdefault(cfg.bucket_for(item.length), []).append(item)
    table = Table(
        title=f"raw {name} backend, pre-padded batches, {models.workers} callers (no router)"
    )
    for column in ("bucket", "batch size", "rows/s", "ms per run"):
        table.add_column(column, justify="right")
    best_by_bucket: dict[int, float] = {}
    run_s: dict[int, float] = {}
    best_size: dict[int, int] = {}
    main_bucket = max(buckets, key=lambda b: len(buckets[b]))
    for bucket, items in sorted(buckets.items()):
        for size in backend.batch_sizes:
            rate, per_run = raw_throughput(
                backend, models.preprocessor, items, batch_size=size, seq_len=bucket,
                seconds=seconds, threads=models.workers,
            )  # fmt: skip
            table.add_row(str(bucket), str(size), f"{rate:,.0f}", f"{per_run * 1000:.2f}")
            if rate > best_by_bucket.get(bucket, 0.0):
                best_by_bucket[bucket] = rate
                best_size[bucket] = size
            if bucket == main_bucket:
                run_s[size] = per_run
    console.print(table)
    return Ceiling(_mix_rate(best_by_bucket, buckets), run_s, best_size, buckets)


def _mix_rate(rate_by_bucket: dict[int, float], buckets: dict[int, list[TokenizedInput]]) -> float:
    # Time per row of the mix = sum over buckets of (share of the mix / rate there).
    total = sum(len(items) for items in buckets.values())
    return 1.0 / sum(len(items) / total / rate_by_bucket[b] for b, items in buckets.items())


def ceiling_again(models: ModelSet, name: str, found: Ceiling, seconds: float) -> float:
    """The raw rate of the mix at the sizes `ceiling` found best, measured once more."""
    backend = models.backends[name]
    rates = {
        bucket: raw_throughput(
            backend, models.preprocessor, items, batch_size=found.best_size[bucket],
            seq_len=bucket, seconds=seconds, threads=models.workers,
        )[0]
        for bucket, items in found.by_bucket.items()
    }  # fmt: skip
    return _mix_rate(rates, found.by_bucket)


def paired_rounds(
    models: ModelSet, found: Ceiling, texts: Sequence[str], *, rounds: int, seconds: float
) -> tuple[float, float, float]:
    """Raw ceiling and router throughput measured turn about, `rounds` times each.

    On a shared machine the speed drifts by several percent within a minute; alternating
    the two and taking the median of the per-round ratios keeps that drift out of the
    ratio. Returns (median router q/s, median raw q/s, median ratio).
    """
    raws, routed, ratios = [], [], []
    for _ in range(rounds):
        raw = ceiling_again(models, "intent", found, seconds)
        ours = asyncio.run(router_sustained(models, texts, seconds))
        raws.append(raw)
        routed.append(ours)
        ratios.append(ours / raw)
        console.print(f"  round: raw {raw:,.0f} q/s, router {ours:,.0f} q/s, {ours / raw:.3f}")
    return statistics.median(routed), statistics.median(raws), statistics.median(ratios)


# ---------------------------------------------------------- router in process


async def router_sustained(models: ModelSet, texts: Sequence[str], seconds: float) -> float:
    """Completed intent requests/s with the router saturated (requests always waiting)."""
    router = build_router(models, max_queue_delay_ms=2.0, queue_capacity=4096, timeout_ms=30_000)
    await router.start(warm=False)
    cfg = router.config("intent")
    outstanding = 4 * cfg.max_batch_size
    done = 0
    stop_at = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop_at:
            await router.intent(texts[i % len(texts)], timeout_ms=30_000)
            done += 1
            i += outstanding

    # Fill the pipeline first so the measured window is steady state.
    await router.intent(texts[0])
    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(outstanding)))
    elapsed = time.perf_counter() - start
    await router.drain(30)
    return done / elapsed


# ------------------------------------------------------- throughput at SLO


def slo_batch_cap(run_s: dict[int, float], budget_s: float) -> int:
    """Largest batch size whose run fits in `budget_s` (a share of the latency objective)."""
    fitting = [size for size, seconds in run_s.items() if seconds <= budget_s]
    return max(fitting) if fitting else min(run_s)


def intent_body(i: int) -> bytes:
    return orjson.dumps({"query": QUERIES[i % len(QUERIES)]})


@dataclass(frozen=True)
class StepPlan:
    """How long each rate is held: at least `seconds`, and long enough for `min_requests`
    (so a low rate's p99 rests on more than a handful of requests), at most `max_seconds`."""

    seconds: float
    min_requests: int
    max_seconds: float

    def duration(self, rate: int) -> float:
        return min(self.max_seconds, max(self.seconds, self.min_requests / rate))


def measurer(vegeta: Path, label: str, url: str, plan: StepPlan) -> Callable[[int], Step]:
    bodies = [intent_body(i) for i in range(len(QUERIES))]

    def measure(rate: int) -> Step:
        step = step_from(
            label, attack(vegeta, url, bodies, rate=rate, duration_s=plan.duration(rate))
        )
        share = step.router_share_p99()
        console.print(
            f"  {label:<9} {rate:5d}/s  p50 {step.attack.percentile_ms(50):7.2f}  "
            f"p99 {step.p99():7.2f} ms  ok {step.attack.ok}/{step.attack.sent}  "
            + ("" if math.isnan(share) else f"router share p99 {share:5.2f} ms  ")
            + f"client CPU {step.attack.client_cpu_share * 100:.0f} %"
        )
        return step

    return measure


def sweep_rates(half_b1: float) -> list[int]:
    """1 q/s up to half the model's batch-size-1 rate: where the tail goal applies."""
    rates = [r for r in (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 400) if r <= half_b1]
    top = int(half_b1)
    if top >= 1 and top not in rates:
        rates.append(top)
    return rates


@dataclass
class SloRound:
    stoker: dict[float, int]
    ray: dict[float, int]
    stoker_steps: list[Step]
    ray_steps: list[Step]


def slo_round(
    vegeta: Path,
    urls: dict[str, str],
    *,
    slos: Sequence[float],
    start: int,
    max_rate: int,
    plan: StepPlan,
    sweep: Sequence[int],
) -> SloRound:
    """One turn of both servers: the stoker tail sweep, then each objective's search for
    stoker and for Ray Serve (fresh caches, so every round measures anew)."""  # fmt: skip
    found: dict[str, dict[float, int]] = {}
    steps: dict[str, list[Step]] = {}
    for label, url in urls.items():
        search = RateSearch(measurer(vegeta, label, url, plan), max_rate=max_rate)
        if label == "stoker":
            for rate in sweep:
                search.step(rate)
        found[label] = {slo: search.best_rate(slo, start) for slo in slos}
        steps[label] = list(search.steps.values())
    return SloRound(found["stoker"], found.get("ray", {}), steps["stoker"], steps.get("ray", []))


def encode_all(router_models: ModelSet, texts: Sequence[tuple[str, str | None]], max_len: int
               ) -> list[TokenizedInput]:  # fmt: skip
    pre = router_models.preprocessor
    return [pre.encode(a, b, max_len=max_len) for a, b in texts]


def main(
    *,
    backend: Annotated[
        str, typer.Option(help="registry target (cpu, cuda, neuron) or module:factory")
    ] = "cpu",
    raw_seconds: Annotated[float, typer.Option(help="seconds per raw shape point")] = 1.5,
    sustain_seconds: Annotated[
        float, typer.Option(help="seconds of each raw and router round")
    ] = 4.0,
    rounds: Annotated[int, typer.Option(help="raw/router rounds, turn about")] = 5,
    step_seconds: Annotated[float, typer.Option(help="shortest hold of a rate step (s)")] = 3.0,
    layout: Annotated[
        str,
        typer.Option(
            help="CPU model layout COPIESxTHREADS for every server ('' keeps the settings): "
            "one intra-op thread per copy keeps a single query's run on one thread"
        ),
    ] = "1x1",
    skip_ray: Annotated[bool, typer.Option(help="skip the Ray Serve peer")] = False,
    slo_ms: Annotated[
        list[float] | None,
        typer.Option(help="p99 objectives in ms (repeatable; default 10, 25, 50, 100)"),
    ] = None,
    min_requests: Annotated[
        int, typer.Option(help="fewest requests per rate step (low rates are held longer)")
    ] = 100,
    max_step_seconds: Annotated[float, typer.Option(help="longest a rate step is held")] = 25.0,
    slo_rounds: Annotated[
        int, typer.Option(help="rounds of the SLO searches, servers turn about")
    ] = 2,
    json_out: Annotated[Path | None, typer.Option(help="also write figures as JSON")] = None,
) -> None:
    report = Report()
    if layout:
        copies, _, threads = layout.partition("x")
        if not (copies.isdigit() and threads.isdigit() and int(copies) and int(threads)):
            raise typer.BadParameter(
                f"expected COPIESxTHREADS, got {layout!r}", param_hint="layout"
            )
        # Through the environment, so the in-process models, the stoker server and Ray
        # Serve's replica all build the same layout.
        os.environ["STOKER_INFERENCE_REPLICAS"] = copies
        os.environ["STOKER_INFERENCE_THREADS_PER_REPLICA"] = threads
    models = load_models(backend)
    console.print(
        f"CPU layout: {os.environ.get('STOKER_INFERENCE_REPLICAS', 'default')} copies x "
        f"{os.environ.get('STOKER_INFERENCE_THREADS_PER_REPLICA', 'default')} intra-op threads"
    )
    for b in models.backends.values():
        b.warm()
    intent_cfg = config_for(models.backends["intent"])
    queries = encode_all(models, [(q, None) for q in QUERIES], intent_cfg.max_seq_len)
    console.print(f"query lengths (tokens): {sorted(t.length for t in queries)}")
    if max(t.length for t in queries) > 16:
        raise typer.BadParameter("the real-time workload must be queries of up to 16 tokens")

    # 1. ceiling vs router, measured turn about
    found = ceiling("intent", models, queries, raw_seconds)
    intent_ceiling, run_s = found.rate, found.run_s
    console.print(f"router vs raw ceiling, {rounds} rounds of {sustain_seconds:g} s each:")
    sustained, raw_median, ratio = paired_rounds(
        models, found, QUERIES, rounds=rounds, seconds=sustain_seconds
    )
    report.add("router sustained vs raw intent ceiling (median of rounds)", sustained,
               raw_median, 0.95, "q/s", ratio=ratio)  # fmt: skip
    report.figures["intent_best_batch_size"] = found.best_size

    # 2. throughput at SLO and the tail: same client (vegeta, its own process), batch cap,
    # queue delay and rate steps for both servers, turn about in rounds.
    slos = sorted(slo_ms or list(SLOS_MS))
    cap = slo_batch_cap(run_s, budget_s=0.4 * slos[-1] / 1000)
    delay_ms = 2.0
    b1_rate = 1.0 / run_s[1] if 1 in run_s else intent_ceiling
    half_b1 = b1_rate / 2
    start = max(1, round(0.1 * intent_ceiling))
    plan = StepPlan(step_seconds, min_requests, max_step_seconds)
    sweep = sweep_rates(half_b1)
    vegeta = ensure_vegeta()
    console.print(
        f"SLO runs: client vegeta {VEGETA_VERSION} ({vegeta}), batch cap {cap} (run <= "
        f"{0.4 * slos[-1]:.0f} ms), max queue delay {delay_ms} ms, first step {start}/s, "
        f"objectives {slos} ms; tail sweep {sweep} q/s (half the batch-size-1 rate "
        f"{b1_rate:.0f}/s)"
    )
    body = intent_body(0)
    rounds_done: list[SloRound] = []
    with ExitStack() as servers:
        urls = {
            "stoker": servers.enter_context(
                stoker_server(backend, batch_cap=cap, delay_ms=delay_ms, body=body)
            )
        }
        if not skip_ray:
            urls["ray"] = servers.enter_context(
                ray_server(backend, batch_cap=cap, delay_ms=delay_ms, body=body)
            )
        for i in range(slo_rounds):
            # Turn about: the server measured first alternates between rounds.
            order = dict(reversed(urls.items())) if i % 2 else urls
            console.print(f"SLO round {i + 1} of {slo_rounds} ({', '.join(order)}):")
            rounds_done.append(
                slo_round(vegeta, order, slos=slos, start=start, max_rate=int(3 * intent_ceiling),
                          plan=plan, sweep=sweep)
            )  # fmt: skip
    for i, rnd in enumerate(rounds_done, 1):
        console.print(steps_table(f"stoker router, intent, vegeta open loop (round {i})",
                                  rnd.stoker_steps))  # fmt: skip
        swept = [s for s in rnd.stoker_steps if s.rate in sweep]
        console.print(breakdown_table(
            f"stoker latency breakdown (ms), tail sweep, round {i}: mean per phase of the "
            "requests at each percentile", swept))  # fmt: skip
        if not skip_ray:
            console.print(steps_table(f"Ray Serve @serve.batch, intent, vegeta open loop "
                                      f"(round {i})", rnd.ray_steps))  # fmt: skip
    worst_share = max(
        (s.router_share_p99() for rnd in rounds_done for s in rnd.stoker_steps if s.rate in sweep),
        default=math.nan,
    )
    report.figures["tail_sweep_rates"] = sweep
    report.figures["router_share_p99_ms_worst"] = worst_share
    report.figures["router_share_p99_ms"] = [
        {str(int(s.rate)): round(s.router_share_p99(), 3) for s in rnd.stoker_steps
         if s.rate in sweep} for rnd in rounds_done
    ]  # fmt: skip
    report.add_upper(f"router share of p99, 1 to {int(half_b1)} q/s (worst step, all rounds)",
                     worst_share, 3.0, "ms")  # fmt: skip
    for slo in slos:
        ours = [rnd.stoker[slo] for rnd in rounds_done]
        report.figures[f"stoker_rate_at_p99_{slo:g}ms"] = ours
        if not skip_ray:
            theirs = [rnd.ray[slo] for rnd in rounds_done]
            report.figures[f"ray_rate_at_p99_{slo:g}ms"] = theirs
            # The worst round counts. A round where neither met the objective has no
            # ratio, and then neither has the figure: one round won is not a result.
            ratios = [_ratio(o, t) for o, t in zip(ours, theirs, strict=True)]
            worst = math.nan if any(math.isnan(r) for r in ratios) else min(ratios)
            report.add(f"throughput at SLO (p99 < {slo:g} ms): stoker vs Ray Serve "
                       f"(rounds {_span(ours)} vs {_span(theirs)} q/s)",
                       statistics.median(ours), statistics.median(theirs), 2.0, "q/s",
                       ratio=worst)  # fmt: skip

    _print_report(report, backend, json_out)


def _print_report(report: Report, backend: str, json_out: Path | None) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(
        title=f"stoker router bench ({backend} backend, {os.cpu_count()} cores, load {load})"
    )
    for column in ("figure", "measured", "against", "ratio", "target"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.figures, indent=2) + "\n")


def _ratio(ours: float, theirs: float) -> float:
    # A peer of zero leaves nothing to divide by: any positive figure beats it, and two
    # zeros have no ratio at all.
    if theirs > 0:
        return ours / theirs
    return math.inf if ours > 0 else math.nan


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


if __name__ == "__main__":
    typer.run(main)
