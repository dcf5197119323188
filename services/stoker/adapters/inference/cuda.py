"""CUDA backend: fp16 weights, one CUDA graph captured per static (batch size, bucket).

A captured graph replays every kernel of the forward pass with one launch, which removes
the per-kernel launch overhead that dominates a small model like MiniLM at low batch
sizes. Graphs read from and write to fixed device buffers, so `run` copies the batch into
the shape's input buffers, replays, and copies the output back. One replica per
configured copy (usually one per GPU); each replica owns its graphs and buffers.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import torch

from stoker.adapters.inference import (
    BackendSpec,
    BackendUnavailable,
    PooledBackend,
    ReplicaPool,
    as_tensors,
    example_inputs,
    rows,
    translate_errors,
)
from stoker.inference.config import Precision
from stoker.inference.heads import ScoringModel
from stoker.ports.inference import PaddedBatch

NO_CUDA = "cuda backend needs an NVIDIA GPU and a CUDA build of torch; none found"


def require_cuda() -> int:
    """Number of visible GPUs, or BackendUnavailable with the reason."""
    if torch.version.cuda is None or not torch.cuda.is_available():
        raise BackendUnavailable(NO_CUDA)
    return torch.cuda.device_count()


@dataclass(slots=True)
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


class _Replica:
    def __init__(self, model: ScoringModel, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        self.graphs: dict[tuple[int, int], _Captured] = {}
        self.lock = threading.Lock()

    def capture(self, batch_size: int, seq_len: int) -> _Captured:
        key = (batch_size, seq_len)
        captured = self.graphs.get(key)
        if captured is not None:
            return captured
        with torch.cuda.device(self.device), torch.inference_mode():
            inputs = tuple(t.to(self.device) for t in example_inputs(batch_size, seq_len))
            # Warm up on a side stream so lazy initialisation (cuBLAS handles, autotuning)
            # happens before capture, as CUDA graph capture requires.
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = self.model(*inputs)
        captured = _Captured(graph=graph, inputs=inputs, output=output)
        self.graphs[key] = captured
        return captured

    def run(self, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        batch_size, seq_len = tensors[0].shape
        with self.lock:
            captured = self.capture(batch_size, seq_len)
            for buffer, value in zip(captured.inputs, tensors, strict=True):
                buffer.copy_(value, non_blocking=True)
            captured.graph.replay()
            return captured.output.to("cpu")


class CudaBackend(PooledBackend[_Replica]):
    def __init__(
        self,
        model: ScoringModel,
        spec: BackendSpec,
        *,
        precision: Precision = Precision.FP16,
        replicas: int = 1,
    ) -> None:
        gpus = require_cuda()
        if precision not in (Precision.FP16, Precision.FP32, Precision.BF16):
            raise BackendUnavailable(f"cuda backend does not support {precision.value!r}")
        dtype = {
            Precision.FP16: torch.float16,
            Precision.BF16: torch.bfloat16,
            Precision.FP32: torch.float32,
        }[precision]
        self._spec = spec
        self.precision = precision
        # Copies are spread round robin over the visible GPUs.
        self._pool: ReplicaPool[_Replica] = ReplicaPool(
            [_Replica(model, torch.device("cuda", i % gpus), dtype) for i in range(replicas)]
        )

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self._spec.check(batch)
        with self._pool.lease() as replica, translate_errors(self.name):
            probs = replica.run(as_tensors(batch))
        return rows(probs, batch.real_rows)

    def warm(self) -> None:
        with translate_errors(self.name):
            for replica in self._pool.replicas:
                for batch_size, seq_len in self._spec.shapes():
                    replica.run(example_inputs(batch_size, seq_len))
