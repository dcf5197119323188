"""Raw backend throughput: the ceiling the router can reach, per compile variant and layout.

For every variant (runtime x precision) and replica layout (copies x threads per copy) it
compiles the full model for one sequence bucket, warms every shape, then keeps every
replica busy for `--seconds` per batch size and reports rows per second. No router, no
queueing, no tokenization: the numbers are what the compiled model alone can do.

    python bench/backends.py                         # CPU: torchscript/onnxruntime variants
    python bench/backends.py --device cuda           # fp16 + CUDA graphs on a GPU machine
    python bench/backends.py --device neuron --replicas 2   # inf2.xlarge: 2 NeuronCores

Throughput does not depend on the head's weights, so without `--models-dir` an untrained
head of the right shape is used; with it, the saved head is.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from stoker.adapters.inference import example_inputs
from stoker.app.inference_registry import build_backend, shared_backbone
from stoker.inference.artifacts import load_head
from stoker.inference.config import CpuRuntime, Device, InferenceSettings, Precision
from stoker.inference.data import INTENTS
from stoker.inference.heads import (
    DUPLICATE_LABELS,
    HeadSpec,
    ScoringModel,
    build_head,
    feature_size,
)
from stoker.ports.inference import ModelBackend, ModelName, PaddedBatch

CPU_VARIANTS = (
    (CpuRuntime.TORCHSCRIPT, Precision.FP32),
    (CpuRuntime.TORCHSCRIPT, Precision.BF16),
    (CpuRuntime.TORCHSCRIPT, Precision.INT8),
    (CpuRuntime.ONNXRUNTIME, Precision.FP32),
    (CpuRuntime.ONNXRUNTIME, Precision.INT8),
)


@dataclass(frozen=True)
class Point:
    variant: str
    layout: str
    batch_size: int
    rows_per_s: float
    ms_per_batch: float


def _model(name: ModelName, models_dir: Path | None) -> tuple[ScoringModel, tuple[str, ...]]:
    backbone = shared_backbone()
    if models_dir is not None:
        artifact = load_head(models_dir, name)
        return ScoringModel(name, backbone, artifact.head), artifact.metadata.labels
    labels = INTENTS if name == "intent" else DUPLICATE_LABELS
    torch.manual_seed(0)
    head = build_head(HeadSpec(feature_size(name, backbone.hidden_size), 64, len(labels)))
    return ScoringModel(name, backbone.eval(), head.eval()), labels


def _batch(batch_size: int, seq_len: int) -> PaddedBatch:
    ids, mask, types = example_inputs(batch_size, seq_len)
    return PaddedBatch(ids.tolist(), mask.tolist(), types.tolist(), real_rows=batch_size)


def _measure(backend: ModelBackend, batch: PaddedBatch, workers: int, seconds: float) -> float:
    """Rows per second with `workers` threads each running batches back to back."""
    done = [0] * workers
    deadline = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline:
            backend.run(batch)
            done[slot] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(done) * batch.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=[d.value for d in Device], default="cpu")
    parser.add_argument("--model", choices=["intent", "duplicate"], default="intent")
    parser.add_argument("--bucket", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measured point")
    parser.add_argument(
        "--layouts",
        default="1x2,2x1",
        help="CPU replica layouts COPIESxTHREADS (default: one copy with 2 threads, 2 with 1)",
    )
    parser.add_argument("--replicas", type=int, default=1, help="cuda/neuron: model copies")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()

    name: ModelName = args.model
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    model, labels = _model(name, args.models_dir)
    device = Device(args.device)
    console = Console()
    console.print(
        f"device={device.value} model={name} bucket={args.bucket} batch sizes={batch_sizes} "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} torch={torch.__version__}"
    )

    runs: list[tuple[str, str, InferenceSettings]] = []
    if device is Device.CPU:
        for layout in args.layouts.split(","):
            copies, threads = (int(x) for x in layout.split("x"))
            for runtime, precision in CPU_VARIANTS:
                settings = InferenceSettings(
                    device=device,
                    cpu_runtime=runtime,
                    precision=precision,
                    replicas=copies,
                    threads_per_replica=threads,
                    batch_sizes=batch_sizes,
                    seq_buckets=(args.bucket,),
                )
                runs.append((f"{runtime.value} {precision.value}", layout, settings))
    else:
        settings = InferenceSettings(
            device=device, replicas=args.replicas, batch_sizes=batch_sizes,
            seq_buckets=(args.bucket,),
        )  # fmt: skip
        runs.append((device.value, f"{args.replicas} copies", settings))

    points: list[Point] = []
    for variant, layout, settings in runs:
        with console.status(f"compiling {variant} ({layout})"):
            backend = build_backend(model, labels, settings)
            backend.warm()
        workers = settings.replicas
        for batch_size in batch_sizes:
            rate = _measure(backend, _batch(batch_size, args.bucket), workers, args.seconds)
            points.append(
                Point(variant, layout, batch_size, rate, 1000 * batch_size * workers / rate)
            )
            console.print(f"  {variant:<22} {layout:<9} batch {batch_size:>3}: {rate:8.1f} rows/s")
        del backend

    table = Table(title=f"{name} raw throughput, bucket {args.bucket} (rows/s)")
    table.add_column("variant")
    table.add_column("layout")
    for b in batch_sizes:
        table.add_column(f"b={b}", justify="right")
    table.add_column("best", justify="right")
    for variant, layout, _ in runs:
        row = [p for p in points if p.variant == variant and p.layout == layout]
        best = max(row, key=lambda p: p.rows_per_s)
        table.add_row(
            variant, layout, *(f"{p.rows_per_s:.0f}" for p in row), f"{best.rows_per_s:.0f}"
        )
    console.print(table)
    ceiling = max(points, key=lambda p: p.rows_per_s)
    console.print(
        f"ceiling: {ceiling.rows_per_s:.0f} rows/s with {ceiling.variant}, layout "
        f"{ceiling.layout}, batch {ceiling.batch_size} ({ceiling.ms_per_batch:.1f} ms per batch)"
    )


if __name__ == "__main__":
    main()
