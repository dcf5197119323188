"""Fleet benchmark: sharded training's scaling, and the multi-model endpoint under Zipf
traffic over 1,000 Prophet models.

One run, this machine. Reproduce with:

    .venv/bin/pip install -e '.[all,dev,bench,fleet]'
    .venv/bin/python bench/fleet.py            # about 12 minutes on 2 cores
    .venv/bin/python bench/fleet.py --skip-training            # the endpoint: about 5
    .venv/bin/python bench/fleet.py --skip-serving             # training: about 7

For the endpoint, fitting 1,000 Prophet models would take most of the run, so a few real
models are fitted
(`--fitted`, on the synthetic energy data) and their artifacts copied under 1,000 names in
S3 (moto's server, in a process of its own); each name is loaded, cached and evicted on its
own, as 1,000 distinct models would be. Figures printed (docs/benchmarks-fleet.md records
them):

0. Sharded training (`_fleet_training.py`): Prophet models fitted per second by one
   training job of `train_customers` over `--training-customers` customers (1,000, the
   seed's size: each job pays a few seconds of worker start-up, which a small job does not
   amortise) with `InstanceCount` 1 and with 2 on the local backend (`ShardedByS3Key`),
   turn about for `--training-rounds` rounds (4: a shared machine's speed drifts by several
   per cent between jobs minutes apart, which a round of two neighbouring jobs mostly
   cancels and a median of four outvotes), and the scaling efficiency
   rate(2) / (2 x rate(1)) of each round and their median; goal: at least 0.9 on 2 cores.
   With it, where the CPU went (`getrusage`): the workers' CPU per model with one worker and
   with two, and the backend's CPU per job.
   `--skip-serving` runs only this part, `--skip-training` skips it.

1. Zipf(1.1) traffic over the 1,000 models through the endpoint's engine (`ModelFleet`, two
   worker processes, one request at a time) with a memory tier of 100 models and a disk
   tier of `--disk-models`:
   the memory hit rate; the hot path's overhead over the model's own predict (each request's
   time minus its predict time in the worker; goal: p99 under 1 ms), with a bare in-process
   predict of the same models alongside; the cold loads' p50/p99 from the disk tier and from
   the object store; where a hot request's time went, per phase of the endpoint's own
   stamps (`stoker.inference.fleet.timing.PHASES`), per percentile; and the floor under the
   overhead: a bare hand-off to a process and back with no endpoint code (`_ipc_floor.py`).
2. Hot-path throughput over HTTP, closed loop, on the 100 hottest models (all in memory
   after a warm-up): `stoker endpoints serve` against Ray Serve's `serve.multiplexed` with the
   same cache size (two replicas of 50 models, as the endpoint has two workers), the same
   models, the same client, every server up and measured turn about in rounds (the median
   of the per-round ratios); goal: stoker at least 1.5 x Ray Serve. The endpoint runs twice,
   as it ships (`--max-batch`, 8) and with `--max-batch 1` (one predict per request, as
   before batches), so the batches' gain is a ratio of the same run. The endpoint's replies'
   `Server-Timing` phases are printed per percentile, with 8 in flight and, after the
   rounds, with one request in flight (the endpoint's own costs with no queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from _fleet_training import training_scaling
from _ipc_floor import handoff_floor
from stoker.adapters.objects.s3 import S3Store
from stoker.inference.fleet import FleetConfig, ModelFleet
from stoker.inference.fleet.artifacts import unpacked_size
from stoker.inference.fleet.timing import PHASES, TOTAL, InvokeStamps, phases_ms
from stoker.inference.router.timing import parse_server_timing
from stoker.logs import configure_logging
from stoker.training_scripts import energy_data, forecast_model

REPO = Path(__file__).resolve().parents[1]
BUCKET = "fleet-bench"
PREFIX = f"s3://{BUCKET}/models/"
BODY = b'{"period": 7}'
console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def zipf_ranks(count: int, total: int, s: float, seed: int) -> list[int]:
    """`count` draws of ranks 0..total-1 with P(rank k) proportional to (k+1)^-s."""
    weights = np.arange(1, total + 1, dtype=float) ** -s
    rng = np.random.default_rng(seed)
    return [int(r) for r in rng.choice(total, size=count, p=weights / weights.sum())]


@dataclass
class Models:
    folder: Path
    names: list[str]
    """By popularity rank: names[0] is the hottest."""
    unpacked_bytes: int
    file_bytes: int
    fitted: list[Any] = field(default_factory=list)


def fit_models(folder: Path, *, total: int, fitted: int, seed: int) -> Models:
    frame = energy_data.generate(
        customers=fitted,
        rows_per_customer=300,
        start=datetime(2020, 10, 1),
        end=datetime(2023, 1, 1),
        seed=seed,
    )
    artifacts: list[bytes] = []
    models = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"fitting {fitted} Prophet models", total=fitted)
        for customer in range(fitted):
            model = forecast_model.fit(
                frame[frame.customer_id == customer], uncertainty_samples=100
            )
            models.append(model)
            artifacts.append(forecast_model.artifact_bytes(model))
            progress.advance(task)
    folder.mkdir(parents=True, exist_ok=True)
    # Popularity is a random permutation of the names, so hot models are spread over keys.
    order = np.random.default_rng(seed).permutation(total)
    names = [f"{int(i)}.tar.gz" for i in order]
    for i in range(total):
        (folder / f"{i}.tar.gz").write_bytes(artifacts[i % fitted])
    unpacked = max(unpacked_size(folder / f"{i}.tar.gz") for i in range(fitted))
    return Models(folder, names, unpacked, max(len(a) for a in artifacts), models)


@contextmanager
def moto_s3(models: Models) -> Iterator[str]:
    """moto's S3 server in a process of its own, holding every artifact."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)
        httpx.put(f"{url}/{BUCKET}", timeout=10).raise_for_status()  # CreateBucket
        asyncio.run(upload(models, url))
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def upload(models: Models, url: str) -> None:
    store = S3Store(PREFIX, endpoint_url=url)
    files = sorted(models.folder.iterdir())
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("uploading artifacts to S3 (moto)", total=len(files))
            for path in files:
                await store.put(path.name, path.read_bytes())
                progress.advance(task)
    finally:
        await store.close()


# ------------------------------------------------------------------ engine under Zipf


@dataclass
class Sample:
    tier: str
    total_s: float
    predict_s: float
    phases: dict[str, float]
    """Milliseconds per phase in the engine (`ENGINE_PHASES`), from the endpoint's stamps."""


ENGINE_PHASES = PHASES[1:-1]
"""The phases the engine stamps (no HTTP around it: http and reply are the route's)."""


def engine_phases(stamps: InvokeStamps) -> dict[str, float]:
    """The engine's phases of one invocation: `phases_ms` with the HTTP layer's stamps set
    to the engine's own first and last, so http and reply are 0 and dropped."""
    phases = phases_ms(stamps.invoked, stamps, stamps.answered)
    return {name: phases[name] for name in ENGINE_PHASES}


async def zipf_run(
    models: Models, s3_url: str, *, requests: int, cache_models: int, disk_models: int, seed: int
) -> tuple[list[Sample], dict[str, Any]]:
    cache = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    config = FleetConfig(
        cache_dir=cache,
        memory_bytes=cache_models * models.unpacked_bytes,
        disk_bytes=disk_models * models.file_bytes,
        workers=2,
    )
    fleet = ModelFleet(S3Store(PREFIX, endpoint_url=s3_url), config)
    await fleet.start()
    samples: list[Sample] = []
    ranks = zipf_ranks(requests, len(models.names), 1.1, seed)
    try:
        # Redrawn between requests, not by rich's refresh thread: that thread takes the GIL
        # for a redraw in the middle of a request, and the stamps would count its wait.
        with Progress(console=console, transient=True, auto_refresh=False) as progress:
            task = progress.add_task("Zipf(1.1) requests through the engine", total=requests)
            queue = iter(ranks)

            async def client() -> None:
                for rank in queue:
                    started = time.perf_counter()
                    answer = await fleet.invoke(models.names[rank], BODY)
                    total = time.perf_counter() - started
                    samples.append(
                        Sample(answer.tier, total, answer.predict_s, engine_phases(answer.stamps))
                    )
                    progress.advance(task)
                    progress.refresh()

            # One request at a time: a request's time is its own, with no wait behind another
            # request for the same worker counted as the endpoint's overhead.
            await client()
        state = {"memory_bytes": fleet.memory_bytes, "disk_bytes": fleet.disk_bytes}
    finally:
        await fleet.close()
        shutil.rmtree(cache, ignore_errors=True)
    return samples, state


def bare_predicts(models: Models, count: int) -> list[float]:
    """The same request to the same models, in this process, no endpoint at all."""
    request = forecast_model.parse_request(BODY)
    times = []
    for i in range(count):
        model = models.fitted[i % len(models.fitted)]
        started = time.perf_counter()
        forecast_model.predict(model, request)
        times.append(time.perf_counter() - started)
    return times


# ------------------------------------------------------------------ HTTP throughput


@dataclass
class Loop:
    rate: float
    ok: int
    errors: int
    phases: list[dict[str, float]]
    """Each answer's Server-Timing phases (ms), when the server sends them."""
    client_ms: list[float]
    """Each answer's time as the client saw it (ms)."""


async def closed_loop(
    url: str, path: str, headers_for: Any, names: list[str], *, seconds: float, clients: int
) -> Loop:
    """Requests/s over `seconds` with `clients` requests in flight."""
    ranks = zipf_ranks(1_000_000, len(names), 1.1, 7)
    ok = errors = 0
    phases: list[dict[str, float]] = []
    client_ms: list[float] = []
    position = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def one() -> None:
            nonlocal ok, errors, position
            while time.perf_counter() < deadline:
                name = names[ranks[position % len(ranks)]]
                position += 1
                sent = time.perf_counter()
                reply = await http.post(path, content=BODY, headers=headers_for(name))
                if reply.status_code == 200:
                    ok += 1
                    client_ms.append((time.perf_counter() - sent) * 1000)
                    timing = reply.headers.get("server-timing")
                    if timing:
                        phases.append(parse_server_timing(timing))
                else:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Loop(ok / elapsed, ok, errors, phases, client_ms)


async def warm(url: str, path: str, headers_for: Any, names: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for name in names:
            reply = await http.post(path, content=BODY, headers=headers_for(name))
            reply.raise_for_status()


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    path: str
    headers: Callable[[str], dict[str, str]]


@contextmanager
def stoker_server(models: Models, *, cache_models: int, max_batch: int) -> Iterator[Server]:
    """`stoker endpoints serve` on the models' folder, in a process of its own."""
    port = free_port()
    env = os.environ | {"PYTHONPATH": f"{REPO / 'services'}:{REPO}", "STOKER_LOG_LEVEL": "WARNING"}
    cache = tempfile.mkdtemp(prefix="fleet-bench-http-")
    memory_mb = cache_models * models.unpacked_bytes / (1024 * 1024)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "stoker"), "endpoints", "serve",
         "--prefix", str(models.folder), "--no-auth", "--port", str(port),
         "--memory-mb", f"{memory_mb:.6f}", "--workers", "2", "--cache-dir", cache,
         "--name", "bench", "--max-batch", str(max_batch)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def headers(name: str) -> dict[str, str]:
        return {"X-Amzn-SageMaker-Target-Model": name, "Content-Type": "application/json"}

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("stoker endpoints serve did not start")
            time.sleep(0.2)
        name = f"stoker, max-batch {max_batch}"
        yield Server(name, url, "/endpoints/bench/invocations", headers)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(cache, ignore_errors=True)


@contextmanager
def ray_server(models: Models, *, cache_models: int) -> Iterator[Server]:
    """Ray Serve: one deployment, two replicas, `serve.multiplexed` with the same total cache
    (half per replica), loading the same artifacts with the same loader."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    folder = str(models.folder)
    per_replica = max(1, cache_models // 2)

    @serve.deployment(num_replicas=2, max_ongoing_requests=64)
    class Forecasts:
        @serve.multiplexed(max_num_models_per_replica=per_replica)  # type: ignore[untyped-decorator]
        async def get_model(self, model_id: str) -> Any:
            return forecast_model.load_artifact(Path(folder) / model_id)

        async def __call__(self, request: Request) -> Response:
            model = await self.get_model(serve.get_multiplexed_model_id())
            parsed = forecast_model.parse_request(await request.body())
            return Response(forecast_model.predict(model, parsed), media_type="application/json")

    port = free_port()
    os.environ["PYTHONPATH"] = f"{REPO / 'services'}:{REPO}"
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deployment: Any = Forecasts
        serve.run(deployment.bind(), route_prefix="/forecast")

        def headers(name: str) -> dict[str, str]:
            return {"serve_multiplexed_model_id": name}

        yield Server("Ray Serve multiplexed", f"http://127.0.0.1:{port}", "/forecast", headers)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def throughput_rounds(
    servers: list[Server], hot: list[str], *, rounds: int, seconds: float, clients: int
) -> tuple[dict[str, list[float]], dict[str, list[dict[str, float]]]]:
    """Each server warmed on the hot models, then measured turn about (ABBA order) for
    `rounds` rounds, so a change in the machine's load falls on all alike. Returns the
    rates per round and the Server-Timing phases of every answer, by server."""
    rates: dict[str, list[float]] = {server.name: [] for server in servers}
    phases: dict[str, list[dict[str, float]]] = {server.name: [] for server in servers}
    for server in servers:
        asyncio.run(warm(server.url, server.path, server.headers, hot))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("HTTP throughput rounds", total=rounds * len(servers))
        for turn in range(rounds):
            for server in servers if turn % 2 == 0 else list(reversed(servers)):
                loop = asyncio.run(
                    closed_loop(
                        server.url,
                        server.path,
                        server.headers,
                        hot,
                        seconds=seconds,
                        clients=clients,
                    )
                )
                if loop.errors:
                    raise RuntimeError(f"{server.name}: {loop.errors} requests failed")
                rates[server.name].append(loop.rate)
                phases[server.name].extend(loop.phases)
                progress.advance(task)
    return rates, phases


def one_in_flight(server: Server, hot: list[str], *, seconds: float) -> Loop:
    """The server's hot path with one request at a time: no request waits behind another,
    so its Server-Timing shows the endpoint's own costs around the model's predict."""
    return asyncio.run(
        closed_loop(server.url, server.path, server.headers, hot, seconds=seconds, clients=1)
    )


# ------------------------------------------------------------------ report


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.2f}"


def main(
    *,
    total: Annotated[int, typer.Option(help="models served")] = 1000,
    fitted: Annotated[int, typer.Option(help="real Prophet fits copied under the names")] = 8,
    requests: Annotated[int, typer.Option(help="Zipf requests through the engine")] = 1500,
    cache_models: Annotated[int, typer.Option(help="memory tier, in models")] = 100,
    disk_models: Annotated[int, typer.Option(help="disk tier, in models")] = 400,
    seconds: Annotated[float, typer.Option(help="each HTTP throughput round (s)")] = 8.0,
    rounds: Annotated[int, typer.Option(help="HTTP throughput rounds per server")] = 4,
    clients: Annotated[int, typer.Option(help="HTTP requests in flight")] = 8,
    skip_ray: Annotated[bool, typer.Option(help="skip the Ray Serve peer")] = False,
    max_batch: Annotated[
        int, typer.Option(help="the endpoint's --max-batch, measured against --max-batch 1")
    ] = 8,
    seed: Annotated[int, typer.Option(help="seed of the data and the traffic")] = 0,
    training_customers: Annotated[int, typer.Option(help="models per training job")] = 1000,
    training_rows: Annotated[int, typer.Option(help="rows per customer to fit")] = 300,
    training_rounds: Annotated[int, typer.Option(help="rounds of a 1- and a 2-worker job")] = 4,
    skip_training: Annotated[bool, typer.Option(help="skip the training part")] = False,
    skip_serving: Annotated[bool, typer.Option(help="run only the training part")] = False,
) -> None:
    # moto's S3 takes any credentials; botocore needs some to sign with.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "fleetbench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    configure_logging("WARNING", json=False)
    figures: dict[str, Any] = {}
    if not skip_training:
        figures |= training_scaling(
            console,
            customers=training_customers,
            rows=training_rows,
            rounds=training_rounds,
            seed=seed,
        )
    if skip_serving:
        console.print_json(json.dumps(figures))
        return
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-models-"))
    try:
        models = fit_models(workdir / "models", total=total, fitted=fitted, seed=seed)
        console.print(
            f"{fitted} models fitted, copied to {total} names; "
            f"{models.unpacked_bytes} bytes unpacked, {models.file_bytes} bytes per artifact"
        )
        with moto_s3(models) as s3_url:
            samples, state = asyncio.run(
                zipf_run(
                    models,
                    s3_url,
                    requests=requests,
                    cache_models=cache_models,
                    disk_models=disk_models,
                    seed=seed,
                )
            )
        bare = bare_predicts(models, 300)
        # The same two wake-ups with no endpoint code, around a compute as long as the hot
        # requests' median predict.
        predicts = sorted(s.predict_s for s in samples if s.tier == "memory")
        floor = asyncio.run(handoff_floor(300, predicts[len(predicts) // 2]))
        engine_table(
            samples=samples,
            bare=bare,
            floor=floor,
            state=state,
            figures=figures,
            cache_models=cache_models,
            models=models,
        )

        hot = models.names[:cache_models]
        # What two processes doing nothing but predict could serve: the models' own bound.
        ceiling = 2 / statistics.fmean(bare)
        figures["bare_predict_ceiling_rps"] = ceiling
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(stoker_server(models, cache_models=cache_models, max_batch=b))
                for b in sorted({1, max_batch}, reverse=True)
            ]
            if not skip_ray:
                servers.append(stack.enter_context(ray_server(models, cache_models=cache_models)))
            rates, phases = throughput_rounds(
                servers, hot, rounds=rounds, seconds=seconds, clients=clients
            )
            alone = one_in_flight(servers[0], hot, seconds=seconds)
        throughput_table(rates, figures, hot=hot, clients=clients, ceiling=ceiling)
        for name, answers in phases.items():
            if answers:
                phases_table(f"{name}: {clients} in flight", answers, figures)
        phases_table(
            f"{servers[0].name}: one request in flight",
            alone.phases,
            figures,
            client_ms=alone.client_ms,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print_json(json.dumps(figures))


def engine_table(
    *,
    samples: list[Sample],
    bare: list[float],
    floor: list[float],
    state: dict[str, Any],
    figures: dict[str, Any],
    cache_models: int,
    models: Models,
) -> None:
    by_tier: dict[str, list[Sample]] = {}
    for sample in samples:
        by_tier.setdefault(sample.tier, []).append(sample)
    hot = by_tier.get("memory", [])
    overhead = [s.total_s - s.predict_s for s in hot]
    hit_rate = len(hot) / len(samples)
    figures |= {
        "requests": len(samples),
        "hit_rate": hit_rate,
        "hot_overhead_p50_ms": pct(overhead, 50) * 1000,
        "hot_overhead_p99_ms": pct(overhead, 99) * 1000,
        "bare_predict_p50_ms": pct(bare, 50) * 1000,
        "handoff_floor_p50_ms": pct(floor, 50) * 1000,
        "handoff_floor_p99_ms": pct(floor, 99) * 1000,
        "bare_predict_p99_ms": pct(bare, 99) * 1000,
    }
    table = Table(title=f"Zipf(1.1) over {len(models.names)} models, memory tier {cache_models}")
    for column in ("what", "count", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    table.add_row("bare in-process predict", str(len(bare)), ms(bare, 50), ms(bare, 99))
    table.add_row(
        "hot: request total", str(len(hot)), *(ms([s.total_s for s in hot], q) for q in (50, 99))
    )
    table.add_row("hot: predict in worker", str(len(hot)),
                  *(ms([s.predict_s for s in hot], q) for q in (50, 99)))  # fmt: skip
    table.add_row("hot: overhead (total - predict)", str(len(hot)),
                  ms(overhead, 50), ms(overhead, 99))  # fmt: skip
    table.add_row("floor: bare hand-off to a process and back", str(len(floor)),
                  ms(floor, 50), ms(floor, 99))  # fmt: skip
    for tier, label in (("disk", "cold load from disk tier"), ("store", "cold load from S3")):
        cold = [s.total_s - s.predict_s for s in by_tier.get(tier, [])]
        table.add_row(label, str(len(cold)), ms(cold, 50), ms(cold, 99))
        figures[f"cold_{tier}_p50_ms"] = pct(cold, 50) * 1000
        figures[f"cold_{tier}_p99_ms"] = pct(cold, 99) * 1000
        figures[f"cold_{tier}_count"] = len(cold)
    console.print(table)
    phases_table(
        "hot path in the engine (one request at a time)",
        [{**s.phases, TOTAL: s.total_s * 1000} for s in hot],
        figures,
    )
    console.print(
        f"memory hit rate {hit_rate:.3f}; resident at the end: memory "
        f"{state['memory_bytes']} bytes, disk {state['disk_bytes']} bytes; "
        f"mean hot overhead {statistics.fmean(overhead) * 1000:.3f} ms"
    )


def phases_table(
    title: str,
    answers: list[dict[str, float]],
    figures: dict[str, Any],
    *,
    client_ms: list[float] | None = None,
) -> None:
    """Per phase of the endpoint's stamps (`timing.PHASES`): p50, p90, p99 and mean (ms),
    and its share of the mean total."""
    names = [name for name in (*PHASES, TOTAL) if any(name in a for a in answers)]
    table = Table(title=f"where the time went: {title} ({len(answers)} answers)")
    for column in ("phase", "p50 ms", "p90 ms", "p99 ms", "mean ms", "share of mean"):
        table.add_column(column, justify="right")
    mean_total = statistics.fmean(a[TOTAL] for a in answers) if answers else float("nan")
    breakdown: dict[str, dict[str, float]] = {}
    rows = [(name, [a[name] for a in answers if name in a]) for name in names]
    if client_ms:
        rows.append(("client: whole request", client_ms))
    for name, values in rows:
        mean = statistics.fmean(values)
        qs = [float(np.percentile(values, q)) for q in (50, 90, 99)]
        table.add_row(name, *(f"{q:.3f}" for q in qs), f"{mean:.3f}", f"{mean / mean_total:.1%}")
        breakdown[name] = {"p50": qs[0], "p90": qs[1], "p99": qs[2], "mean": mean}
    figures.setdefault("breakdown_ms", {})[title] = breakdown
    console.print(table)


def throughput_table(
    rates: dict[str, list[float]],
    figures: dict[str, Any],
    *,
    hot: list[str],
    clients: int,
    ceiling: float,
) -> None:
    table = Table(title=f"hot-path throughput over HTTP: {len(hot)} models, {clients} in flight")
    for column in ("server", "rounds", "median requests/s", "min", "max"):
        table.add_column(column, justify="right")
    table.add_row("ceiling: 2 processes of bare predict", "", f"{ceiling:.1f}", "", "")
    for name, values in rates.items():
        table.add_row(
            name,
            str(len(values)),
            f"{statistics.median(values):.1f}",
            f"{min(values):.1f}",
            f"{max(values):.1f}",
        )
        figures[f"{name} rps"] = statistics.median(values)
    names = list(rates)
    # In the servers' order (the endpoint as it ships, then --max-batch 1, then the peer).
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for a, b in pairs:
        ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        figures[f"ratio {a} / {b}"] = statistics.median(ratios)
        table.add_row(
            f"ratio {a} / {b}, per round",
            str(len(ratios)),
            f"{statistics.median(ratios):.2f}",
            f"{min(ratios):.2f}",
            f"{max(ratios):.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
