"""CUDA and Neuron are real code paths that refuse to start, with a clear reason, on a
machine without the hardware or package (and build on one that has it); settings are
validated up front."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from stoker.adapters.inference import BackendSpec, BackendUnavailable
from stoker.adapters.inference.cuda import NO_CUDA, CudaBackend
from stoker.adapters.inference.neuron import NO_NEURON, NeuronBackend
from stoker.app.inference_registry import build_backend, load_backend
from stoker.core.errors import ConfigurationError
from stoker.inference.config import Device, InferenceSettings, Precision, device_precision
from stoker.inference.heads import ScoringModel
from stoker.ports.inference import ModelName

SPEC = BackendSpec(name="intent", labels=("a", "b"), batch_sizes=(1,), seq_buckets=(16,))
HAS_GPU = torch.cuda.is_available()
HAS_NEURON = importlib.util.find_spec("torch_neuronx") is not None


def test_cuda_without_gpu_says_what_is_missing(models: dict[ModelName, ScoringModel]) -> None:
    """Selecting cuda without a GPU fails at construction with the documented message; on a
    GPU machine the same call builds the backend."""
    if HAS_GPU:
        assert CudaBackend(models["intent"], SPEC).name == "intent"
        return
    with pytest.raises(BackendUnavailable) as info:
        CudaBackend(models["intent"], SPEC)
    assert (
        str(info.value)
        == NO_CUDA
        == ("cuda backend needs an NVIDIA GPU and a CUDA build of torch; none found")
    )


def test_neuron_without_package_says_what_is_missing(
    models: dict[ModelName, ScoringModel],
) -> None:
    """Selecting neuron without torch-neuronx fails at construction, naming the package; on
    an Inferentia machine the same call builds the backend."""
    if HAS_NEURON:
        assert NeuronBackend(models["intent"], SPEC, cores=2).name == "intent"
        return
    with pytest.raises(BackendUnavailable, match="torch-neuronx") as info:
        NeuronBackend(models["intent"], SPEC, cores=2)
    assert str(info.value) == NO_NEURON


@pytest.mark.parametrize(("device", "message"), [("cuda", NO_CUDA), ("neuron", NO_NEURON)])
def test_settings_select_the_device(
    device: str, message: str, models: dict[ModelName, ScoringModel]
) -> None:
    """The device setting routes to that backend, whose guard fires (a ConfigurationError,
    so the process stops at start rather than at the first request)."""
    settings = InferenceSettings(device=Device(device))
    if (device == "cuda" and HAS_GPU) or (device == "neuron" and HAS_NEURON):
        assert build_backend(models["intent"], ("a", "b"), settings).name == "intent"
        return
    with pytest.raises(ConfigurationError) as info:
        build_backend(models["intent"], ("a", "b"), settings)
    assert str(info.value) == message


def test_unknown_device_or_model_is_refused(tmp_path: Path) -> None:
    """A typo in the device or model name is a configuration error that lists the choices."""
    settings = InferenceSettings(models_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="expected cpu, cuda or neuron"):
        load_backend("intent", "tpu", settings=settings)
    with pytest.raises(ConfigurationError, match="expected intent or duplicate"):
        load_backend("sentiment", settings=settings)


def test_precision_defaults_per_device() -> None:
    """Unset precision means fp32 on CPU, fp16 on CUDA and bf16 auto-cast on Neuron."""
    assert device_precision(InferenceSettings()) is Precision.FP32
    assert device_precision(InferenceSettings(device=Device.CUDA)) is Precision.FP16
    assert device_precision(InferenceSettings(device=Device.NEURON)) is Precision.BF16


def test_shape_settings_are_validated() -> None:
    """Batch sizes and buckets must ascend, and buckets must fit MiniLM's 512 positions."""
    with pytest.raises(ValueError, match="ascending"):
        InferenceSettings(batch_sizes=(4, 2))
    with pytest.raises(ValueError, match="512"):
        InferenceSettings(seq_buckets=(16, 1024))
