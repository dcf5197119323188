"""CPU backends (TorchScript and ONNX Runtime) on the real model: batching, padding and
static shapes never change a row's scores."""

from __future__ import annotations

import threading

import pytest
import torch

from stoker.adapters.inference import BackendSpec, ShapeNotCompiled, as_tensors
from stoker.adapters.inference.cpu import OnnxRuntimeBackend, TorchScriptBackend
from stoker.inference.data import INTENTS
from stoker.inference.heads import DUPLICATE_LABELS, ScoringModel
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.ports.inference import ModelBackend, ModelName, TokenizedInput

BATCH_SIZES = (1, 4)
BUCKET = 32
FP32_TOLERANCE = 1e-4

QUERIES = ["red running shoes", "where is my package", "play ocean eyes", "open the cart"]
PAIRS = [
    ("Acme red t-shirt size M", "ACME TEE RED SIZE M"),
    ("Lumo blue mug 12 oz", "Lumo green mug 12 oz"),
    ("Orbit gel pen pack of 6", "Orbit gel pen 12-pack"),
    ("Vanta rain jacket size L", "Kestrel usb c cable 6 ft"),
]


def _spec(name: ModelName) -> BackendSpec:
    labels = INTENTS if name == "intent" else DUPLICATE_LABELS
    return BackendSpec(name=name, labels=labels, batch_sizes=BATCH_SIZES, seq_buckets=(BUCKET,))


def _inputs(name: ModelName, tokenizer: WordPieceTokenizer) -> list[TokenizedInput]:
    if name == "intent":
        return [tokenizer.encode(q, max_len=BUCKET) for q in QUERIES]
    return [tokenizer.encode(a, b, max_len=BUCKET) for a, b in PAIRS]


def _batched_vs_single(
    backend: ModelBackend, inputs: list[TokenizedInput], tokenizer: WordPieceTokenizer
) -> tuple[list[list[float]], list[list[float]]]:
    batched = backend.run(tokenizer.pad(inputs, batch_size=4, seq_len=BUCKET))
    single = [backend.run(tokenizer.pad([x], batch_size=1, seq_len=BUCKET))[0] for x in inputs]
    return batched, single


def _assert_close(a: list[list[float]], b: list[list[float]], tol: float) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a == pytest.approx(row_b, abs=tol)


@pytest.fixture(scope="module")
def torchscript(models: dict[ModelName, ScoringModel]) -> dict[ModelName, TorchScriptBackend]:
    return {
        name: TorchScriptBackend(m, _spec(name), replicas=2, threads_per_replica=1)
        for name, m in models.items()
    }


@pytest.mark.parametrize("name", ["intent", "duplicate"])
def test_torchscript_batched_equals_unbatched(
    name: ModelName,
    torchscript: dict[ModelName, TorchScriptBackend],
    models: dict[ModelName, ScoringModel],
    tokenizer: WordPieceTokenizer,
) -> None:
    """A row scored in a batch of 4 equals the same row scored alone, within 1e-4 (fp32),
    and equals the eager model."""
    backend = torchscript[name]
    batched, single = _batched_vs_single(backend, _inputs(name, tokenizer), tokenizer)
    _assert_close(batched, single, FP32_TOLERANCE)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in batched)
    assert len(batched[0]) == len(backend.labels)
    padded = tokenizer.pad(_inputs(name, tokenizer), batch_size=4, seq_len=BUCKET)
    with torch.inference_mode():
        eager = models[name](*as_tensors(padded)).tolist()
    _assert_close(batched, eager, FP32_TOLERANCE)


def test_torchscript_padding_rows_do_not_change_real_rows(
    torchscript: dict[ModelName, TorchScriptBackend], tokenizer: WordPieceTokenizer
) -> None:
    """One real pair padded to a batch of 4 scores like the pair alone; only real rows return."""
    backend = torchscript["duplicate"]
    pair = _inputs("duplicate", tokenizer)[:1]
    padded = backend.run(tokenizer.pad(pair, batch_size=4, seq_len=BUCKET))
    alone = backend.run(tokenizer.pad(pair, batch_size=1, seq_len=BUCKET))
    assert len(padded) == 1
    _assert_close(padded, alone, FP32_TOLERANCE)


def test_undeclared_shape_is_refused(
    torchscript: dict[ModelName, TorchScriptBackend], tokenizer: WordPieceTokenizer
) -> None:
    """A batch in a shape the backend did not declare is a router bug, reported clearly."""
    rows = _inputs("intent", tokenizer)[:2]
    with pytest.raises(ShapeNotCompiled, match=r"\(2, 32\)"):
        torchscript["intent"].run(tokenizer.pad(rows, batch_size=2, seq_len=BUCKET))


def test_replicas_serve_concurrent_callers(
    torchscript: dict[ModelName, TorchScriptBackend], tokenizer: WordPieceTokenizer
) -> None:
    """Two threads running at once through two replicas get the same scores as one at a time."""
    backend = torchscript["intent"]
    batch = tokenizer.pad(_inputs("intent", tokenizer), batch_size=4, seq_len=BUCKET)
    expected = backend.run(batch)
    results: list[list[list[float]]] = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.run(batch))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert backend.replicas == 2
    assert len(results) == 4
    for result in results:
        _assert_close(result, expected, FP32_TOLERANCE)


def test_onnxruntime_matches_torchscript_and_batches_exactly(
    models: dict[ModelName, ScoringModel],
    torchscript: dict[ModelName, TorchScriptBackend],
    tokenizer: WordPieceTokenizer,
) -> None:
    """The ONNX Runtime export of the duplicate model scores like TorchScript (fp32), and
    batched equals unbatched within 1e-4."""
    backend = OnnxRuntimeBackend(models["duplicate"], _spec("duplicate"), replicas=1)
    inputs = _inputs("duplicate", tokenizer)
    batched, single = _batched_vs_single(backend, inputs, tokenizer)
    _assert_close(batched, single, FP32_TOLERANCE)
    reference = torchscript["duplicate"].run(tokenizer.pad(inputs, batch_size=4, seq_len=BUCKET))
    _assert_close(batched, reference, FP32_TOLERANCE)
