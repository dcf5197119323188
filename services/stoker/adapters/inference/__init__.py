"""Compile backends: one `ModelBackend` per (model, device), chosen by setting.

Every backend compiles the same full model (backbone + head + softmax, `ScoringModel`)
for the static shapes it declares, and runs a batch on one of its replicas. What differs
is only how a shape is compiled and where it runs:

* `cpu`    TorchScript (traced and frozen per shape) or ONNX Runtime; fp32, bf16, int8.
* `cuda`   fp16 weights, one CUDA graph captured per shape.
* `neuron` `torch_neuronx.trace` per shape with bf16 auto-cast, one copy per NeuronCore.
"""

from __future__ import annotations

import queue
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from stoker.core.errors import ConfigurationError, StokerError
from stoker.ports.inference import ModelName, PaddedBatch

R = TypeVar("R")


class BackendUnavailable(ConfigurationError):
    """The chosen device's hardware or package is missing; the process must not start."""


class InferenceFailed(StokerError):
    """The runtime failed on a batch it accepted; the router fails that batch's requests."""


class ShapeNotCompiled(ValueError):
    """A batch arrived in a shape the backend did not declare (a router bug)."""


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """What a backend serves: model identity and its static shapes."""

    name: ModelName
    labels: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seq_buckets: tuple[int, ...]

    def check(self, batch: PaddedBatch) -> None:
        if batch.batch_size not in self.batch_sizes or batch.seq_len not in self.seq_buckets:
            raise ShapeNotCompiled(
                f"{self.name}: batch shape ({batch.batch_size}, {batch.seq_len}) is not one of "
                f"batch sizes {self.batch_sizes} x buckets {self.seq_buckets}"
            )
        if not 0 < batch.real_rows <= batch.batch_size:
            raise ValueError(f"{self.name}: real_rows {batch.real_rows} outside the batch")

    def shapes(self) -> list[tuple[int, int]]:
        return [(b, s) for s in self.seq_buckets for b in self.batch_sizes]


class ReplicaPool(Generic[R]):
    """Model copies handed to one caller at a time; a caller blocks while all are busy.

    The router calls `run` from several worker threads; each copy runs one batch at a
    time, so replicas bound both concurrency and memory.
    """

    def __init__(self, replicas: Sequence[R]) -> None:
        if not replicas:
            raise ValueError("a pool needs at least one replica")
        self._all = list(replicas)
        self._free: queue.SimpleQueue[R] = queue.SimpleQueue()
        for replica in replicas:
            self._free.put(replica)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def replicas(self) -> list[R]:
        return list(self._all)

    @contextmanager
    def lease(self) -> Iterator[R]:
        replica = self._free.get()
        try:
            yield replica
        finally:
            self._free.put(replica)


class PooledBackend(Generic[R]):
    """What every compiled backend shares: the ModelBackend properties read off its spec and
    its replica pool. Subclasses set `_spec` and `_pool` and implement `run` and `warm`."""

    _spec: BackendSpec
    _pool: ReplicaPool[R]

    @property
    def name(self) -> ModelName:
        return self._spec.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self._spec.labels

    @property
    def replicas(self) -> int:
        """Batches this backend runs at once; the router sizes its worker pool by it."""
        return len(self._pool)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self._spec.batch_sizes

    @property
    def seq_buckets(self) -> tuple[int, ...]:
        return self._spec.seq_buckets


def as_tensors(batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three int64 (batch, seq) inputs of a compiled model."""
    return (
        torch.tensor(batch.input_ids, dtype=torch.int64),
        torch.tensor(batch.attention_mask, dtype=torch.int64),
        torch.tensor(batch.token_type_ids, dtype=torch.int64),
    )


def example_inputs(batch_size: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    """A realistic packed-pair shaped input for tracing: both segments present, no padding."""
    ids = torch.full((batch_size, seq_len), 1000, dtype=torch.int64)
    ids[:, 0] = 101
    ids[:, -1] = 102
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    types[:, seq_len // 2 :] = 1
    return ids, mask, types


@contextmanager
def legacy_tracing_apis() -> Iterator[None]:
    """Silence torch's deprecation notices for TorchScript tracing, freezing, legacy ONNX
    export and eager dynamic quantization. They are the documented inputs of the Neuron
    compiler and of ONNX export without onnxscript, so this project uses them on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.ao")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*legacy")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*removed")
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*quantiz")
        yield


@contextmanager
def translate_errors(name: ModelName) -> Iterator[None]:
    """Runtime errors (torch and ONNX Runtime raise RuntimeError subclasses) become
    `InferenceFailed`, so no library type leaves a backend."""
    try:
        yield
    except RuntimeError as exc:
        raise InferenceFailed(f"{name}: inference failed: {exc}") from exc


def rows(probs: torch.Tensor, real_rows: int) -> list[list[float]]:
    out: list[list[float]] = probs[:real_rows].float().tolist()
    return out


Runner = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]
