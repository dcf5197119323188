"""Inference settings from the environment (prefix STOKER_INFERENCE_).

CPU defaults come from bench/backends.py on the idle development machine (docs/models.md):
at fp32 one ONNX Runtime session with two threads answers one query in about 6 ms, against
14-27 ms for the TorchScript layouts, and its large-batch throughput is within a few percent
of theirs. int8 was faster still but changes predictions, so it is opt-in.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stoker.core.errors import ConfigurationError
from stoker.settings import load_settings

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
DEFAULT_SEQ_BUCKETS = (16, 32, 64, 128)


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    NEURON = "neuron"


class CpuRuntime(StrEnum):
    TORCHSCRIPT = "torchscript"
    """torch.jit.trace + torch.jit.freeze per static shape."""
    ONNXRUNTIME = "onnxruntime"
    """One ONNX export with dynamic axes, run by ONNX Runtime's CPU provider."""


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    """TorchScript on CPU (weights and activations), auto-cast on Neuron."""
    INT8 = "int8"
    """Dynamic quantization of every Linear layer (CPU only)."""
    FP16 = "fp16"
    """CUDA only."""


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOKER_INFERENCE_", extra="ignore", frozen=True)

    device: Device = Field(default=Device.CPU, description="cpu | cuda | neuron")
    cpu_runtime: CpuRuntime = Field(
        default=CpuRuntime.ONNXRUNTIME, description="torchscript | onnxruntime"
    )
    precision: Precision | None = Field(
        default=None,
        description="fp32 | bf16 | int8 | fp16; default per device: cpu fp32, cuda fp16, "
        "neuron bf16 auto-cast",
    )
    replicas: int = Field(
        default=1, ge=1, le=256, description="model copies run concurrently (NeuronCores)"
    )
    threads_per_replica: int = Field(
        default=2, ge=1, le=256, description="intra-op threads of each CPU replica"
    )
    batch_sizes: tuple[int, ...] = Field(
        default=DEFAULT_BATCH_SIZES,
        description="JSON list: the batch sizes compiled and warmed (static shapes)",
    )
    seq_buckets: tuple[int, ...] = Field(
        default=DEFAULT_SEQ_BUCKETS,
        description="JSON list: the sequence-length buckets inputs are padded to",
    )
    models_dir: Path | None = Field(
        default=None, description="trained heads; default <STOKER_DATA_DIR>/models"
    )
    intent_version: int | None = Field(default=None, ge=1, description="default: latest")
    duplicate_version: int | None = Field(default=None, ge=1, description="default: latest")

    @field_validator("batch_sizes", "seq_buckets")
    @classmethod
    def _ascending(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v < 1 for v in value) or list(value) != sorted(set(value)):
            raise ValueError("expected distinct positive integers in ascending order")
        return value

    @field_validator("seq_buckets")
    @classmethod
    def _fits_positions(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # MiniLM has 512 position embeddings; pairs need at least [CLS] a [SEP] b [SEP].
        if value[0] < 5 or value[-1] > 512:
            raise ValueError("sequence buckets must lie between 5 and 512 tokens")
        return value


def device_precision(settings: InferenceSettings) -> Precision:
    """The configured precision, or the device's default."""
    if settings.precision is not None:
        return settings.precision
    return {
        Device.CPU: Precision.FP32,
        Device.CUDA: Precision.FP16,
        Device.NEURON: Precision.BF16,
    }[settings.device]


def default_models_dir() -> Path:
    return load_settings().data_dir / "models"


def load_inference_settings() -> InferenceSettings:
    """Settings from the environment, or a ConfigurationError naming each bad one."""
    try:
        return InferenceSettings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = "STOKER_INFERENCE_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid inference settings: " + "; ".join(problems)) from exc
