"""Neuron backend (Inferentia2 / Trainium): `torch_neuronx.trace` per static shape with
bf16 auto-cast, one model copy per NeuronCore.

Each (batch size, bucket) is compiled once by neuronx-cc (minutes per shape; compiled
graphs are cached in `compile_dir` when given so a restart only loads them). Every compiled
shape is then loaded once per NeuronCore with the core placement API, and `run` hands a
batch to whichever core is free: N cores serve N batches at a time, as in the seed's
one-copy-per-core layout.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from stoker.adapters.inference import (
    BackendSpec,
    BackendUnavailable,
    PooledBackend,
    ReplicaPool,
    as_tensors,
    example_inputs,
    legacy_tracing_apis,
    rows,
    translate_errors,
)
from stoker.inference.config import Precision
from stoker.inference.heads import ScoringModel
from stoker.ports.inference import PaddedBatch

NO_NEURON = (
    "neuron backend needs the torch-neuronx package and an Inferentia2/Trainium "
    "instance with the Neuron runtime; none found"
)
COMPILER_ARGS = ["--auto-cast", "all", "--auto-cast-type", "bf16"]


def require_neuron() -> Any:
    """The `torch_neuronx` module, or BackendUnavailable with the reason."""
    try:
        import torch_neuronx
    except ImportError as exc:
        raise BackendUnavailable(NO_NEURON) from exc
    return torch_neuronx


def _weights_digest(model: ScoringModel) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.head.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class NeuronBackend(PooledBackend[int]):
    def __init__(
        self,
        model: ScoringModel,
        spec: BackendSpec,
        *,
        cores: int,
        precision: Precision = Precision.BF16,
        compile_dir: Path | None = None,
    ) -> None:
        self._neuronx = require_neuron()
        if precision not in (Precision.BF16, Precision.FP32):
            raise BackendUnavailable(
                f"neuron backend supports bf16 and fp32, not {precision.value!r}"
            )
        # bf16 auto-cast is the seed's setting (FP32 weights, matmuls in BF16 on the cores).
        self._compiler_args = COMPILER_ARGS if precision is Precision.BF16 else []
        if cores < 1:
            raise BackendUnavailable(f"neuron backend needs at least one NeuronCore, got {cores}")
        self._spec = spec
        self._model = model.eval()
        self._cores = cores
        # Compiling a shape takes minutes, so compiled graphs are kept across restarts,
        # keyed by the head's weights (a new head version compiles afresh).
        self._dir = (compile_dir or Path(tempfile.gettempdir()) / "stoker-neuron") / (
            f"{spec.name}-{_weights_digest(model)}"
        )
        self._dir.mkdir(parents=True, exist_ok=True)
        # core index -> shape -> loaded graph on that core
        self._loaded: list[dict[tuple[int, int], torch.jit.ScriptModule]] = [
            {} for _ in range(cores)
        ]
        self._pool: ReplicaPool[int] = ReplicaPool(list(range(cores)))
        self._compile_lock = threading.Lock()

    def _compiled_path(self, batch_size: int, seq_len: int) -> Path:
        path = self._dir / f"{self._spec.name}_b{batch_size}_s{seq_len}.pt"
        if path.is_file():
            return path
        with legacy_tracing_apis(), translate_errors(self.name):
            traced = self._neuronx.trace(
                self._model,
                example_inputs(batch_size, seq_len),
                compiler_args=self._compiler_args,
            )
            torch.jit.save(traced, str(path))
        return path

    def _graph(self, core: int, batch_size: int, seq_len: int) -> torch.jit.ScriptModule:
        key = (batch_size, seq_len)
        graph = self._loaded[core].get(key)
        if graph is None:
            with self._compile_lock:
                path = self._compiled_path(batch_size, seq_len)
                # Loading inside the context places this copy on NeuronCore `core` only.
                with self._neuronx.experimental.neuron_cores_context(start_nc=core, nc_count=1):
                    graph = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
                self._loaded[core][key] = graph
        return graph

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self._spec.check(batch)
        with self._pool.lease() as core, translate_errors(self.name):
            probs = self._graph(core, batch.batch_size, batch.seq_len)(*as_tensors(batch))
        return rows(probs, batch.real_rows)

    def warm(self) -> None:
        for batch_size, seq_len in self._spec.shapes():
            for core in range(self._cores):
                with translate_errors(self.name):
                    self._graph(core, batch_size, seq_len)(*example_inputs(batch_size, seq_len))
