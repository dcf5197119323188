"""Stream benchmark: the duplicate stream's Faust app against the raw duplicate model.

One run, one backend, this machine, the real Kafka broker. Reproduce with:

    .venv/bin/stoker dev infra up                      # Kafka on 127.0.0.1:9092
    .venv/bin/python bench/stream.py                   # a few minutes on 2 cores

Figures printed (recorded in docs/router.md):
1. the raw duplicate model: rows/s on pre-padded batches at each static batch size, no
   router, no Kafka (the ceiling);
2. the Faust app (`stoker router stream`, one worker, exactly-once): pairs/s from
   pre-loaded pairs to scores a `read_committed` consumer sees, counted from the first
   committed score (start-up, model load and warm-up left out); target >= 0.9 x raw.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from router import QUERIES, Report, ceiling, encode_all
from stoker.app.inference_registry import load_models
from stoker.devinfra.procs import free_ports
from stoker.inference.config import default_models_dir, load_inference_settings
from stoker.inference.pairs import ProductText
from stoker.inference.router.router import config_for

console = Console()
REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def pair_record(i: int) -> dict[str, Any]:
    a, b = QUERIES[i % len(QUERIES)], QUERIES[(i * 5 + 1) % len(QUERIES)]
    return {
        "pair_id": f"bench-{i}",
        "a": {"title": a, "product_type": "retail"},
        "b": {"title": b, "product_type": "retail"},
    }


async def load_pairs(bootstrap: str, topic: str, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = []
        for i in range(n):
            record = pair_record(i)
            key = str(record["pair_id"]).encode()
            sent.append(await producer.send(topic, key=key, value=orjson.dumps(record)))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def count_committed(bootstrap: str, topic: str, n: int, worker: subprocess.Popen[bytes]
                          ) -> float:  # fmt: skip
    """Pairs/s of committed scores from the first one to the n-th (read_committed)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: set[str] = set()
    start = first = 0.0
    columns = (TextColumn("faust app"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("scores", total=n)
            while len(seen) < n:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        seen.add((m.key or b"").decode())
                if seen and not start:
                    start, first = time.perf_counter(), float(len(seen))
                progress.update(task, completed=len(seen))
        return (len(seen) - first) / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def faust_app(backend: str, bootstrap: str, n: int, models_dir: Path) -> float:
    suffix = uuid.uuid4().hex[:8]
    pairs, scores = f"bench.pairs.{suffix}", f"bench.scores.{suffix}"
    asyncio.run(load_pairs(bootstrap, pairs, n))
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "STOKER_MODE": "embedded",  # the view tokens' store; the stream itself is Kafka
            "STOKER_DATA_DIR": data,
            "STOKER_INFERENCE_MODELS_DIR": str(models_dir),
            "STOKER_KAFKA_BOOTSTRAP": bootstrap,
            "STOKER_LOG_LEVEL": "WARNING",
        }
        args = [
            sys.executable, "-m", "stoker.cli.router", "stream",
            "--backend", backend, "--group", f"bench-{suffix}",
            "--pairs-topic", pairs, "--scores-topic", scores,
            "--dead-letter-topic", f"bench.dead.{suffix}",
            "--partitions", str(PARTITIONS), "--web-port", str(free_ports(1)[0]),
        ]  # fmt: skip
        log = Path(data) / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=out)
        try:
            return asyncio.run(count_committed(bootstrap, scores, n, worker))
        except RuntimeError:
            console.print(log.read_text(errors="replace")[-3000:])
            raise
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def main(
    *,
    backend: Annotated[
        str, typer.Option(help="registry target (cpu, cuda, neuron) or module:factory")
    ] = "cpu",
    kafka_bootstrap: Annotated[str, typer.Option(help="Kafka broker")] = "127.0.0.1:9092",
    raw_seconds: Annotated[float, typer.Option(help="seconds per raw shape point")] = 1.5,
    pairs: Annotated[int, typer.Option(help="pairs streamed (0: ten seconds of the raw rate)")] = 0,
) -> None:
    report = Report()
    models = load_models(backend, models=("duplicate",))
    for b in models.backends.values():
        b.warm()
    dup_cfg = config_for(models.backends["duplicate"])
    records = [pair_record(i) for i in range(len(QUERIES))]
    inputs = encode_all(
        models,
        [(ProductText(**p["a"]).as_text(), ProductText(**p["b"]).as_text()) for p in records],
        dup_cfg.max_seq_len,
    )
    raw = ceiling("duplicate", models, inputs, raw_seconds).rate
    n = pairs or int(min(20_000, max(2_000, raw * 10)))
    settings = load_inference_settings()
    models_dir = settings.models_dir or default_models_dir()
    rate = faust_app(backend, kafka_bootstrap, n, models_dir.resolve())
    report.add(f"Faust app ({n:,} pairs, exactly-once) vs raw duplicate model", rate, raw, 0.9,
               "pairs/s")  # fmt: skip

    table = Table(title=f"stoker stream bench ({backend} backend, {os.cpu_count()} cores)")
    for column in ("figure", "measured", "against", "ratio", "target"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
