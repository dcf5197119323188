"""Router benchmark: raw model ceiling, router throughput, throughput at SLO, streaming.

One run, one model, this machine. Reproduce with:

    .venv/bin/pip install -e '.[all,inference,bench]'
    .venv/bin/python bench/router.py            # about 5 minutes on 2 cores

Figures printed (see docs/router.md for recorded numbers):
1. raw backend throughput of the intent model at each static batch size (the ceiling)
   against the router's sustained throughput (in process, saturated), measured turn about
   in rounds (median ratio); target >= 0.95;
2. throughput at SLO: the highest open-loop Poisson rate at which intent p99 < 10 ms
   end to end over HTTP on loopback, for stoker and for Ray Serve (`@serve.batch`)
   serving the same model object; target stoker >= 1.5 x Ray Serve;
The streaming duplicate-detection figure is `bench/stream.py`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from stoker.app.inference_registry import load_models
from stoker.cli.router import build_router, result_table
from stoker.inference.router.loadgen import HttpPool, LoadResult, run_load
from stoker.inference.router.models import ModelSet
from stoker.inference.router.policy import BatchingConfig
from stoker.inference.router.router import config_for
from stoker.ports.inference import ModelBackend, Preprocessor, TokenizedInput

REPO = Path(__file__).resolve().parents[1]
SLO_MS = 10.0
console = Console()

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
        verdict = "[green]met[/green]" if ratio >= target else "[red]missed[/red]"
        self.rows.append(
            (name, f"{measured:,.0f} {unit}", f"{against:,.0f} {unit}", f"{ratio:.2f}",
             f">= {target:.2f} {verdict}")
        )  # fmt: skip
        self.figures[name] = {"measured": measured, "against": against, "ratio": ratio}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, path: str, body: bytes, timeout_s: float) -> None:
    pool = HttpPool(url, max_connections=1)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                status, _ = await pool.post(path, body)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}{path} not ready after {timeout_s} s")
            await asyncio.sleep(0.5)  # polling a server that is still starting
    finally:
        await pool.close()


async def max_rate_at_slo(
    label: str,
    url: str,
    path: str,
    body: Callable[[int], bytes],
    *,
    step_s: float,
    start: float,
    slo_s: float,
) -> tuple[float, list[LoadResult]]:
    """Step Poisson rates up (x1.5) until p99 >= SLO or any failure, then bisect 3 times."""
    results: list[LoadResult] = []

    async def passes(rate: float) -> bool:
        r = await run_load(
            url, path, body, rate=rate, duration_s=step_s,
            max_requests=int(rate * step_s) + 1, seed=int(rate),
        )  # fmt: skip
        results.append(r)
        ok = meets(r, slo_s)
        console.print(
            f"  {label}: {rate:7.0f}/s  p99 {r.percentile(99) * 1000:6.2f} ms  "
            f"ok {r.ok}/{r.sent}  {'pass' if ok else 'FAIL'}"
        )
        return ok

    await run_load(url, path, body, rate=start, duration_s=1.0, seed=99)  # warm connections
    good, bad = 0.0, 0.0
    rate = start
    while rate < 50_000:
        if await passes(rate):
            good = rate
            rate *= 1.5
        else:
            bad = rate
            break
    if bad:
        for _ in range(3):
            mid = (good + bad) / 2 if good else bad / 2
            if await passes(mid):
                good = mid
            else:
                bad = mid
    return good, results


def meets(result: LoadResult, slo_s: float) -> bool:
    """Every request answered 200 and p99 under the objective."""
    return result.ok == result.sent and result.percentile(99) < slo_s


def best_rate(results: Sequence[LoadResult], slo_s: float) -> float:
    """The highest stepped rate that met `slo_s` (0 if none did)."""
    return max((r.rate for r in results if meets(r, slo_s)), default=0.0)


def slo_batch_cap(run_s: dict[int, float], budget_s: float) -> int:
    """Largest batch size whose run fits in `budget_s` (a share of the latency objective)."""
    fitting = [size for size, seconds in run_s.items() if seconds <= budget_s]
    return max(fitting) if fitting else min(run_s)


def stoker_at_slo(
    backend: str, *, batch_cap: int, delay_ms: float, step_s: float, start: float, slo_s: float
) -> Any:
    """`stoker router serve` in its own process, stepped like the peer."""
    port = free_port()
    env = {**os.environ, "STOKER_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "stoker.cli.router", "serve", "--backend", backend,
            "--port", str(port), "--max-batch-size", str(batch_cap),
            "--max-queue-delay-ms", str(delay_ms), "--timeout-ms", "1000",
            "--no-auth",  # the peer has no authentication either; loopback only
        ],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    async def go() -> Any:
        await wait_ready(url, "/v1/intent", intent_body(0), 300)
        return await max_rate_at_slo("stoker", url, "/v1/intent", intent_body, step_s=step_s,
                                     start=start, slo_s=slo_s)  # fmt: skip

    try:
        return asyncio.run(go())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            console.print(f"[red]stoker server exited {proc.returncode}[/red]\n{err.decode()}")


def intent_body(i: int) -> bytes:
    return orjson.dumps({"query": QUERIES[i % len(QUERIES)]})


def ray_at_slo(
    backend: str, *, batch_cap: int, delay_ms: float, step_s: float, start: float, slo_s: float
) -> Any:
    """Ray Serve, `@serve.batch`, the same model object behind a plain HTTP route."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(num_replicas=1, max_ongoing_requests=1024)
    class Intent:
        def __init__(self, spec: str) -> None:
            models = load_models(spec, models=("intent",))
            self.backend = models.backends["intent"]
            self.pre = models.preprocessor
            self.cfg: BatchingConfig = config_for(self.backend)
            self.backend.warm()

        @serve.batch(max_batch_size=batch_cap, batch_wait_timeout_s=delay_ms / 1000)
        async def classify(self, queries: list[str]) -> list[dict[str, Any]]:
            # Same static shapes as stoker: one bucket for the batch, rows padded up.
            tokens = [self.pre.encode(q, max_len=self.cfg.max_seq_len) for q in queries]
            seq = self.cfg.bucket_for(max(t.length for t in tokens))
            size = self.cfg.padded_size(len(tokens))
            rows = self.backend.run(self.pre.pad(tokens, batch_size=size, seq_len=seq))
            labels = self.backend.labels
            return [
                {"intent": labels[max(range(len(r)), key=r.__getitem__)],
                 "scores": dict(zip(labels, r, strict=True))}
                for r in rows
            ]  # fmt: skip

        async def __call__(self, request: Request) -> JSONResponse:
            body = await request.json()
            return JSONResponse(await self.classify(body["query"]))

    port = free_port()
    os.environ["PYTHONPATH"] = str(REPO)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # The decorator makes the class a Deployment; its typing still shows the class.
        deployment: Any = Intent
        serve.run(deployment.bind(backend), route_prefix="/v1/intent")
        url = f"http://127.0.0.1:{port}"

        async def go() -> Any:
            await wait_ready(url, "/v1/intent", intent_body(0), 300)
            return await max_rate_at_slo("ray serve", url, "/v1/intent", intent_body,
                                         step_s=step_s, start=start, slo_s=slo_s)  # fmt: skip

        return asyncio.run(go())
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


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
    step_seconds: Annotated[float, typer.Option(help="seconds per Poisson rate step")] = 3.0,
    skip_ray: Annotated[bool, typer.Option(help="skip the Ray Serve peer")] = False,
    slo_ms: Annotated[
        list[float] | None, typer.Option(help="p99 objectives in ms (repeatable; default 10)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="also write figures as JSON")] = None,
) -> None:
    report = Report()
    models = load_models(backend)
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

    # 2. throughput at SLO: same batch cap, queue delay and rate steps for both. Rates are
    # stepped against the loosest objective; each objective's figure is the highest
    # stepped rate that met it.
    slos = sorted(slo_ms or [SLO_MS])
    loose_s = slos[-1] / 1000
    cap = slo_batch_cap(run_s, budget_s=0.4 * loose_s)
    delay_ms = 2.0
    start = max(5.0, round(0.1 * intent_ceiling))
    console.print(
        f"SLO runs: batch cap {cap} (run <= {0.4 * slos[-1]:.0f} ms), max queue delay "
        f"{delay_ms} ms, first step {start:.0f}/s, objectives {slos} ms"
    )
    _, stoker_results = stoker_at_slo(
        backend, batch_cap=cap, delay_ms=delay_ms, step_s=step_seconds, start=start, slo_s=loose_s
    )
    console.print(result_table("stoker router, intent, open-loop Poisson", stoker_results))
    ray_results: list[LoadResult] = []
    if not skip_ray:
        _, ray_results = ray_at_slo(
            backend,
            batch_cap=cap,
            delay_ms=delay_ms,
            step_s=step_seconds,
            start=start,
            slo_s=loose_s,
        )
        console.print(result_table("Ray Serve @serve.batch, intent, open-loop Poisson",
                                   ray_results))  # fmt: skip
    for slo in slos:
        ours = best_rate(stoker_results, slo / 1000)
        report.figures[f"stoker_rate_at_p99_{slo:g}ms"] = ours
        if not skip_ray:
            theirs = best_rate(ray_results, slo / 1000)
            report.figures[f"ray_rate_at_p99_{slo:g}ms"] = theirs
            report.add(f"throughput at SLO (p99 < {slo:g} ms): stoker vs Ray Serve", ours,
                       theirs, 1.5, "q/s")  # fmt: skip

    table = Table(title=f"stoker router bench ({backend} backend, {os.cpu_count()} cores)")
    for column in ("figure", "measured", "against", "ratio", "target"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.figures, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
