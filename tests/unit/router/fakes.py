"""Fakes behind the inference port: a word-hash preprocessor and a deterministic model.

The fake model's output for a row depends only on that row's real tokens (the attention
mask hides padding), like a real encoder, so batched and unbatched runs must agree.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Sequence

from stoker.inference.router.models import ModelSet
from stoker.ports.inference import ModelBackend, ModelName, PaddedBatch, TokenizedInput

CLS, SEP, PAD = 101, 102, 0


class FakePreprocessor:
    """Whitespace words hashed to ids, with [CLS]/[SEP] like a BERT tokenizer."""

    def encode(self, text: str, pair: str | None = None, *, max_len: int) -> TokenizedInput:
        ids = [CLS, *_words(text), SEP]
        types = [0] * len(ids)
        if pair is not None:
            second = [*_words(pair), SEP]
            ids += second
            types += [1] * len(second)
        truncated = len(ids) > max_len
        if truncated:
            ids, types = [*ids[: max_len - 1], SEP], types[:max_len]
        return TokenizedInput(tuple(ids), tuple(types), truncated)

    def pad(
        self, inputs: Sequence[TokenizedInput], *, batch_size: int, seq_len: int
    ) -> PaddedBatch:
        if len(inputs) > batch_size:
            raise ValueError(f"{len(inputs)} inputs do not fit batch size {batch_size}")
        ids, mask, types = [], [], []
        for item in inputs:
            if item.length > seq_len:
                raise ValueError(f"input of {item.length} tokens exceeds seq_len {seq_len}")
            fill = seq_len - item.length
            ids.append([*item.input_ids, *([PAD] * fill)])
            mask.append([1] * item.length + [0] * fill)
            types.append([*item.token_type_ids, *([0] * fill)])
        for _ in range(batch_size - len(inputs)):
            ids.append([PAD] * seq_len)
            mask.append([0] * seq_len)
            types.append([0] * seq_len)
        return PaddedBatch(ids, mask, types, real_rows=len(inputs))


def _words(text: str) -> list[int]:
    return [1000 + zlib.crc32(w.lower().encode()) % 20000 for w in text.split()]


class FakeBackend:
    """A deterministic model with static shapes; it can be held at a gate or made to fail."""

    def __init__(
        self,
        name: ModelName = "intent",
        *,
        labels: tuple[str, ...] = ("buy", "browse", "support"),
        batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
        seq_buckets: tuple[int, ...] = (8, 16, 32),
    ) -> None:
        self._name: ModelName = name
        self._labels = labels
        self._batch_sizes = batch_sizes
        self._seq_buckets = seq_buckets
        self.runs: list[tuple[int, int, int]] = []
        """(batch size, seq len, real rows) of every run, in order."""
        self.warmed: set[tuple[int, int]] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> ModelName:
        return self._name

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self._batch_sizes

    @property
    def seq_buckets(self) -> tuple[int, ...]:
        return self._seq_buckets

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        if batch.batch_size not in self._batch_sizes or batch.seq_len not in self._seq_buckets:
            raise ValueError(f"shape {batch.batch_size}x{batch.seq_len} was not compiled")
        self.entered.release()
        if not self.gate.wait(timeout=10):
            raise TimeoutError("gate was never opened")
        with self._lock:
            self.runs.append((batch.batch_size, batch.seq_len, batch.real_rows))
        if self.fail_with is not None:
            raise self.fail_with
        return [
            self._row(batch.input_ids[i], batch.attention_mask[i]) for i in range(batch.real_rows)
        ]

    def _row(self, ids: list[int], mask: list[int]) -> list[float]:
        real = [t for t, m in zip(ids, mask, strict=True) if m]
        logits = [
            math.sin(sum((k + 1) * t * (j + 1) for j, t in enumerate(real)) % 1000 / 37.0)
            for k in range(len(self._labels))
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return [e / total for e in exps]

    def warm(self) -> None:
        for size in self._batch_sizes:
            for seq in self._seq_buckets:
                self.warmed.add((size, seq))


def duplicate_backend(**kwargs: object) -> FakeBackend:
    return FakeBackend("duplicate", labels=("different", "duplicate"), **kwargs)  # type: ignore[arg-type]


class SlowBackend(FakeBackend):
    """The fake model with a fixed compute time per batch, like a real one under load."""

    def __init__(self, run_s: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._run_s = run_s

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        time.sleep(self._run_s)  # stands for compute time, not for synchronisation
        return super().run(batch)


def slow_model_set(models: tuple[str, ...]) -> ModelSet:
    """A ModelSet factory for `--backend tests.unit.router.fakes:slow_model_set`."""
    backends: dict[str, ModelBackend] = {}
    for name in models:
        labels = ("different", "duplicate") if name == "duplicate" else ("buy", "browse")
        backends[name] = SlowBackend(
            0.05,
            name=name,
            labels=labels,
            batch_sizes=(1, 8, 32),
            seq_buckets=(16, 32, 64),
        )
    return ModelSet(backends, FakePreprocessor(), workers=1)


class CostedBackend(FakeBackend):
    """The fake model with compute time growing with the padded shape, like a real one."""

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        time.sleep(0.0005 + 0.00002 * batch.batch_size * batch.seq_len)  # compute time
        return super().run(batch)


def costed_model_set(models: tuple[str, ...]) -> ModelSet:
    """A ModelSet factory for smoke runs of the benchmark without the real model."""
    backends: dict[str, ModelBackend] = {}
    for name in models:
        labels = ("different", "duplicate") if name == "duplicate" else ("buy", "browse")
        backends[name] = CostedBackend(
            name=name,  # type: ignore[arg-type]
            labels=labels,
            batch_sizes=(1, 2, 4, 8, 16, 32),
            seq_buckets=(16, 32, 64),
        )
    return ModelSet(backends, FakePreprocessor(), workers=1)


def stream_model_set(models: tuple[str, ...]) -> ModelSet:
    """A ModelSet factory for the stream's integration tests: 5 ms a batch of up to 128."""
    backends: dict[str, ModelBackend] = {}
    for name in models:
        labels = ("different", "duplicate") if name == "duplicate" else ("buy", "browse")
        backends[name] = SlowBackend(
            0.005,
            name=name,
            labels=labels,
            batch_sizes=(1, 8, 32, 128),
            seq_buckets=(16, 32, 64),
        )
    return ModelSet(backends, FakePreprocessor(), workers=1)
