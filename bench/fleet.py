"""Fleet benchmark: sharded training's scaling, and the multi-model endpoint under Zipf
traffic over 1,000 Prophet models.

One run, this machine. Reproduce with:

    .venv/bin/pip install -e '.[all,dev,bench,fleet]'
    .venv/bin/python bench/fleet.py            # about 20 minutes on 2 cores
    .venv/bin/python bench/fleet.py --skip-training            # the endpoint: about 5
    .venv/bin/python bench/fleet.py --skip-serving             # training: about 15

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
   turn about for `--training-rounds` rounds, and the scaling efficiency
   rate(2) / (2 x rate(1)), the median of the rounds; goal: at least 0.9 on 2 cores.
   `--skip-serving` runs only this part, `--skip-training` skips it.

1. Zipf(1.1) traffic over the 1,000 models through the endpoint's engine (`ModelFleet`, two
   worker processes, one request at a time) with a memory tier of 100 models and a disk
   tier of `--disk-models`:
   the memory hit rate; the hot path's overhead over the model's own predict (each request's
   time minus its predict time in the worker; goal: p99 under 1 ms), with a bare in-process
   predict of the same models alongside; the cold loads' p50/p99 from the disk tier and from
   the object store.
2. Hot-path throughput over HTTP, closed loop, on the 100 hottest models (all in memory
   after a warm-up): `stoker endpoints serve` against Ray Serve's `serve.multiplexed` with the
   same cache size (two replicas of 50 models, as the endpoint has two workers), the same
   models, the same client, both servers up and measured turn about in rounds (the median
   of the per-round ratios); goal: stoker at least 1.5 x Ray Serve.
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
from stoker.adapters.objects.s3 import S3Store
from stoker.inference.fleet import FleetConfig, ModelFleet
from stoker.inference.fleet.artifacts import unpacked_size
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
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Zipf(1.1) requests through the engine", total=requests)
            queue = iter(ranks)

            async def client() -> None:
                for rank in queue:
                    started = time.perf_counter()
                    answer = await fleet.invoke(models.names[rank], BODY)
                    total = time.perf_counter() - started
                    samples.append(Sample(answer.tier, total, answer.predict_s))
                    progress.advance(task)

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


async def closed_loop(
    url: str, path: str, headers_for: Any, names: list[str], *, seconds: float, clients: int
) -> tuple[float, int, int]:
    """Requests/s over `seconds` with `clients` requests in flight; (rate, ok, errors)."""
    ranks = zipf_ranks(1_000_000, len(names), 1.1, 7)
    ok = errors = 0
    position = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def one() -> None:
            nonlocal ok, errors, position
            while time.perf_counter() < deadline:
                name = names[ranks[position % len(ranks)]]
                position += 1
                reply = await http.post(path, content=BODY, headers=headers_for(name))
                if reply.status_code == 200:
                    ok += 1
                else:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return ok / elapsed, ok, errors


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
def stoker_server(models: Models, *, cache_models: int) -> Iterator[Server]:
    """`stoker endpoints serve` on the models' folder, in a process of its own."""
    port = free_port()
    env = os.environ | {"PYTHONPATH": f"{REPO / 'services'}:{REPO}", "STOKER_LOG_LEVEL": "WARNING"}
    cache = tempfile.mkdtemp(prefix="fleet-bench-http-")
    memory_mb = cache_models * models.unpacked_bytes / (1024 * 1024)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "stoker"), "endpoints", "serve",
         "--prefix", str(models.folder), "--no-auth", "--port", str(port),
         "--memory-mb", f"{memory_mb:.6f}", "--workers", "2", "--cache-dir", cache,
         "--name", "bench"],
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
        yield Server("stoker endpoints serve", url, "/endpoints/bench/invocations", headers)
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
) -> dict[str, list[float]]:
    """Each server warmed on the hot models, then measured turn about (ABBA order) for
    `rounds` rounds, so a change in the machine's load falls on both alike."""
    rates: dict[str, list[float]] = {server.name: [] for server in servers}
    for server in servers:
        asyncio.run(warm(server.url, server.path, server.headers, hot))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("HTTP throughput rounds", total=rounds * len(servers))
        for turn in range(rounds):
            for server in servers if turn % 2 == 0 else list(reversed(servers)):
                rate, _, errors = asyncio.run(
                    closed_loop(
                        server.url,
                        server.path,
                        server.headers,
                        hot,
                        seconds=seconds,
                        clients=clients,
                    )
                )
                if errors:
                    raise RuntimeError(f"{server.name}: {errors} requests failed")
                rates[server.name].append(rate)
                progress.advance(task)
    return rates


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
    seed: Annotated[int, typer.Option(help="seed of the data and the traffic")] = 0,
    training_customers: Annotated[int, typer.Option(help="models per training job")] = 1000,
    training_rows: Annotated[int, typer.Option(help="rows per customer to fit")] = 300,
    training_rounds: Annotated[int, typer.Option(help="rounds of a 1- and a 2-worker job")] = 2,
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
        engine_table(
            samples=samples,
            bare=bare,
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
            servers = [stack.enter_context(stoker_server(models, cache_models=cache_models))]
            if not skip_ray:
                servers.append(stack.enter_context(ray_server(models, cache_models=cache_models)))
            rates = throughput_rounds(servers, hot, rounds=rounds, seconds=seconds, clients=clients)
        throughput_table(rates, figures, hot=hot, clients=clients, ceiling=ceiling)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print_json(json.dumps(figures))


def engine_table(
    *,
    samples: list[Sample],
    bare: list[float],
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
    for tier, label in (("disk", "cold load from disk tier"), ("store", "cold load from S3")):
        cold = [s.total_s - s.predict_s for s in by_tier.get(tier, [])]
        table.add_row(label, str(len(cold)), ms(cold, 50), ms(cold, 99))
        figures[f"cold_{tier}_p50_ms"] = pct(cold, 50) * 1000
        figures[f"cold_{tier}_p99_ms"] = pct(cold, 99) * 1000
        figures[f"cold_{tier}_count"] = len(cold)
    console.print(table)
    console.print(
        f"memory hit rate {hit_rate:.3f}; resident at the end: memory "
        f"{state['memory_bytes']} bytes, disk {state['disk_bytes']} bytes; "
        f"mean hot overhead {statistics.fmean(overhead) * 1000:.3f} ms"
    )


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
    if len(names) == 2:
        ratios = [a / b for a, b in zip(rates[names[0]], rates[names[1]], strict=True)]
        figures["throughput_ratio_median"] = statistics.median(ratios)
        table.add_row(
            "ratio stoker / Ray, per round",
            str(len(ratios)),
            f"{statistics.median(ratios):.2f}",
            f"{min(ratios):.2f}",
            f"{max(ratios):.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
