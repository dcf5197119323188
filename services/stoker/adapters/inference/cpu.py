"""CPU backend: TorchScript (traced + frozen per static shape) or ONNX Runtime.

Precision:
* fp32 - as trained.
* bf16 - TorchScript only: the whole model in bfloat16, softmax in fp32. Fast only on CPUs
  with native bf16 (AVX512-BF16 / AMX); elsewhere it is emulated and slower than fp32.
* int8 - dynamic quantization of every Linear layer (weights int8, activations quantized
  per batch): `torch.ao.quantization.quantize_dynamic` for TorchScript,
  `onnxruntime.quantization.quantize_dynamic` for ONNX Runtime.

Replicas: TorchScript replicas share one set of frozen graphs (they are read-only) and
`threads_per_replica` sets torch's process-wide intra-op pool; ONNX Runtime replicas are
separate sessions, each with its own `intra_op_num_threads`.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoker.adapters.inference import (
    BackendSpec,
    PooledBackend,
    ReplicaPool,
    as_tensors,
    example_inputs,
    legacy_tracing_apis,
    rows,
    translate_errors,
)
from stoker.core.errors import ConfigurationError
from stoker.inference.config import CpuRuntime, Precision
from stoker.inference.heads import ScoringModel
from stoker.ports.inference import PaddedBatch

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def _prepare(model: ScoringModel, precision: Precision) -> nn.Module:
    model = model.eval()
    if precision is Precision.FP32:
        return model
    if precision is Precision.BF16:
        import copy

        return copy.deepcopy(model).to(torch.bfloat16).eval()
    if precision is Precision.INT8:
        with legacy_tracing_apis():
            quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {nn.Linear}, dtype=torch.qint8
            )
        return quantized.eval()
    raise ConfigurationError(f"cpu backend does not support precision {precision.value!r}")


class TorchScriptBackend(PooledBackend[int]):
    """Frozen TorchScript graph per (batch size, bucket), traced on first use or in `warm`."""

    def __init__(
        self,
        model: ScoringModel,
        spec: BackendSpec,
        *,
        precision: Precision = Precision.FP32,
        replicas: int = 1,
        threads_per_replica: int = 1,
    ) -> None:
        self._spec = spec
        self.precision = precision
        self._model = _prepare(model, precision)
        self._graphs: dict[tuple[int, int], torch.jit.ScriptModule] = {}
        self._compile_lock = threading.Lock()
        # One slot per replica: the graphs are shared, the slots bound concurrency.
        self._pool: ReplicaPool[int] = ReplicaPool(list(range(replicas)))
        # Process-wide: torch has one intra-op pool, shared by all replicas.
        torch.set_num_threads(threads_per_replica)

    def _graph(self, batch_size: int, seq_len: int) -> torch.jit.ScriptModule:
        key = (batch_size, seq_len)
        graph = self._graphs.get(key)
        if graph is not None:
            return graph
        with self._compile_lock:
            graph = self._graphs.get(key)
            if graph is None:
                with legacy_tracing_apis(), torch.inference_mode():
                    traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                        self._model, example_inputs(batch_size, seq_len), check_trace=False
                    )
                    graph = torch.jit.freeze(traced.eval())
                self._graphs[key] = graph
        return graph

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self._spec.check(batch)
        graph = self._graph(batch.batch_size, batch.seq_len)
        with self._pool.lease(), torch.inference_mode(), translate_errors(self.name):
            probs = graph(*as_tensors(batch))
        return rows(probs, batch.real_rows)

    def warm(self) -> None:
        for batch_size, seq_len in self._spec.shapes():
            graph = self._graph(batch_size, seq_len)
            with torch.inference_mode():
                # The profiling executor specialises a frozen graph on its first runs.
                for _ in range(2):
                    graph(*example_inputs(batch_size, seq_len))


class OnnxRuntimeBackend(PooledBackend[Any]):
    """One ONNX graph with dynamic (batch, seq) axes; a session per replica."""

    def __init__(
        self,
        model: ScoringModel,
        spec: BackendSpec,
        *,
        precision: Precision = Precision.FP32,
        replicas: int = 1,
        threads_per_replica: int = 1,
        work_dir: Path | None = None,
    ) -> None:
        if precision not in (Precision.FP32, Precision.INT8):
            raise ConfigurationError(
                f"onnxruntime on CPU supports fp32 and int8, not {precision.value!r}"
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigurationError(
                "onnxruntime is not installed: pip install 'stoker[inference]'"
            ) from exc
        self._spec = spec
        self.precision = precision
        # Sessions read the graph when they are created, so the files can go right after.
        with tempfile.TemporaryDirectory(prefix="stoker-onnx-") as tmp:
            directory = work_dir if work_dir is not None else Path(tmp)
            path = export_onnx(model, directory / f"{spec.name}.onnx")
            if precision is Precision.INT8:
                path = quantize_onnx(path, directory / f"{spec.name}.int8.onnx")
            sessions = []
            for _ in range(replicas):
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads_per_replica
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sessions.append(
                    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                )
        self._pool: ReplicaPool[Any] = ReplicaPool(sessions)

    def _feed(self, tensors: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        return {name: t.numpy() for name, t in zip(_INPUT_NAMES, tensors, strict=True)}

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self._spec.check(batch)
        with self._pool.lease() as session, translate_errors(self.name):
            (probs,) = session.run(["probs"], self._feed(as_tensors(batch)))
        return rows(torch.from_numpy(probs), batch.real_rows)

    def warm(self) -> None:
        for session in self._pool.replicas:
            for batch_size, seq_len in self._spec.shapes():
                session.run(["probs"], self._feed(example_inputs(batch_size, seq_len)))


def export_onnx(model: ScoringModel, path: Path) -> Path:
    """Export with dynamic batch and sequence axes (opset 17)."""
    axes = {name: {0: "batch", 1: "seq"} for name in _INPUT_NAMES}
    axes["probs"] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with legacy_tracing_apis(), torch.inference_mode():
        # The TorchScript-based exporter: the dynamo one needs onnxscript, and this model
        # has no control flow that would need it.
        torch.onnx.export(
            model.eval(),
            example_inputs(2, 16),
            str(path),
            dynamo=False,
            input_names=list(_INPUT_NAMES),
            output_names=["probs"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return path


def quantize_onnx(source: Path, target: Path) -> Path:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs a suggestion to run its preprocessing step at WARNING on the root
    # logger; the graph is already optimised by the exporter.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return target


def cpu_backend(
    model: ScoringModel,
    spec: BackendSpec,
    *,
    runtime: CpuRuntime,
    precision: Precision,
    replicas: int,
    threads_per_replica: int,
) -> TorchScriptBackend | OnnxRuntimeBackend:
    if runtime is CpuRuntime.TORCHSCRIPT:
        return TorchScriptBackend(
            model,
            spec,
            precision=precision,
            replicas=replicas,
            threads_per_replica=threads_per_replica,
        )
    return OnnxRuntimeBackend(
        model, spec, precision=precision, replicas=replicas, threads_per_replica=threads_per_replica
    )
