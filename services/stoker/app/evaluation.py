"""Score held-out data through a compiled backend, and what a lower precision costs.

`score_through` pushes inputs through any `ModelBackend` the way the router does (bucket by
length, pad to an allowed static shape), so the numbers describe the compiled model that
serves traffic, not the eager one it came from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stoker.inference.tokenizer import bucket_for
from stoker.inference.training import LabelledSet, Metrics, TrainConfig, score
from stoker.ports.inference import ModelBackend, Preprocessor, TokenizedInput


def _fit_batch(n: int, sizes: Sequence[int]) -> int:
    return next(size for size in sizes if size >= n)


def score_through(
    backend: ModelBackend, preprocessor: Preprocessor, inputs: Sequence[TokenizedInput]
) -> list[list[float]]:
    """Probabilities for every input, in input order, computed by `backend`."""
    by_bucket: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(inputs):
        by_bucket[bucket_for(item.length, backend.seq_buckets)].append(index)
    largest = backend.batch_sizes[-1]
    out: list[list[float]] = [[] for _ in inputs]
    for bucket, indices in sorted(by_bucket.items()):
        for start in range(0, len(indices), largest):
            chunk = indices[start : start + largest]
            batch = preprocessor.pad(
                [inputs[i] for i in chunk],
                batch_size=_fit_batch(len(chunk), backend.batch_sizes),
                seq_len=bucket,
            )
            for index, probs in zip(chunk, backend.run(batch), strict=True):
                out[index] = probs
    return out


def argmax(row: Sequence[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


@dataclass(frozen=True, slots=True)
class PrecisionResult:
    """One compiled variant measured against the fp32 reference on the same held-out set."""

    variant: str
    metrics: Metrics
    accuracy_change: float
    """Accuracy minus the reference's accuracy (negative: the variant is worse)."""
    agreement: float
    """Fraction of inputs whose predicted label equals the reference's."""
    max_prob_diff: float
    """Largest absolute difference of any probability from the reference."""


def precision_report(
    reference: ModelBackend,
    variants: dict[str, Callable[[], ModelBackend]],
    preprocessor: Preprocessor,
    held: LabelledSet,
) -> list[PrecisionResult]:
    """Held-out metrics of each variant and their change against `reference` (fp32).

    Variants are built lazily and dropped after use, so only one compiled copy of the
    model is alive at a time besides the reference.
    """
    base_probs = score_through(reference, preprocessor, held.inputs)
    base_pred = [argmax(p) for p in base_probs]
    base = score(base_pred, held.targets, held.labels)
    results = [
        PrecisionResult(
            variant="reference (fp32)",
            metrics=base,
            accuracy_change=0.0,
            agreement=1.0,
            max_prob_diff=0.0,
        )
    ]
    for variant, build in variants.items():
        probs = score_through(build(), preprocessor, held.inputs)
        pred = [argmax(p) for p in probs]
        metrics = score(pred, held.targets, held.labels)
        results.append(
            PrecisionResult(
                variant=variant,
                metrics=metrics,
                accuracy_change=metrics.accuracy - base.accuracy,
                agreement=sum(a == b for a, b in zip(pred, base_pred, strict=True)) / len(pred),
                max_prob_diff=max(
                    abs(x - y)
                    for row, ref in zip(probs, base_probs, strict=True)
                    for x, y in zip(row, ref, strict=True)
                ),
            )
        )
    return results


def cpu_precision_report(
    name: str, models_dir: Path, *, threads: int = 2, batch_size: int = 32
) -> list[PrecisionResult]:
    """Every CPU runtime/precision of the latest saved `name` head against TorchScript fp32,
    on the held-out split regenerated from the seed recorded with the head."""
    from stoker.adapters.inference import BackendSpec
    from stoker.adapters.inference.cpu import cpu_backend
    from stoker.app.inference_registry import load_preprocessor, model_name, shared_backbone
    from stoker.inference.artifacts import load_head
    from stoker.inference.config import DEFAULT_SEQ_BUCKETS, CpuRuntime, Precision
    from stoker.inference.heads import ScoringModel
    from stoker.inference.training import intent_sets, pair_sets

    checked = model_name(name)
    artifact = load_head(models_dir, checked)
    cfg = TrainConfig(**artifact.metadata.train_config)
    tokenizer = load_preprocessor()
    _, held = (intent_sets if checked == "intent" else pair_sets)(tokenizer, cfg)
    model = ScoringModel(checked, shared_backbone(), artifact.head)
    spec = BackendSpec(checked, artifact.metadata.labels, (batch_size,), DEFAULT_SEQ_BUCKETS)

    def build(runtime: CpuRuntime, precision: Precision) -> Callable[[], ModelBackend]:
        return lambda: cpu_backend(
            model,
            spec,
            runtime=runtime,
            precision=precision,
            replicas=1,
            threads_per_replica=threads,
        )

    variants = {
        "torchscript-bf16": build(CpuRuntime.TORCHSCRIPT, Precision.BF16),
        "torchscript-int8": build(CpuRuntime.TORCHSCRIPT, Precision.INT8),
        "onnxruntime-fp32": build(CpuRuntime.ONNXRUNTIME, Precision.FP32),
        "onnxruntime-int8": build(CpuRuntime.ONNXRUNTIME, Precision.INT8),
    }
    reference = build(CpuRuntime.TORCHSCRIPT, Precision.FP32)()
    return precision_report(reference, variants, tokenizer, held)
