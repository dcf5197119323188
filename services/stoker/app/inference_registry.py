"""Build the router's models from settings and saved artifacts.

    preprocessor = load_preprocessor()
    intent = load_backend("intent")          # a ModelBackend, not yet warm
    intent.warm()

The backbone is read once per process and shared by both heads.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from stoker.adapters.inference import BackendSpec
from stoker.core.errors import ConfigurationError
from stoker.inference.artifacts import HeadArtifact, load_head
from stoker.inference.backbone import MiniLM, backbone_id, load_backbone, shipped_backbone
from stoker.inference.config import (
    Device,
    InferenceSettings,
    default_models_dir,
    device_precision,
    load_inference_settings,
)
from stoker.inference.heads import ScoringModel
from stoker.inference.router.models import ModelSet
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.ports.inference import ModelBackend, ModelName


@cache
def shared_backbone() -> MiniLM:
    return load_backbone(shipped_backbone())


def load_preprocessor() -> WordPieceTokenizer:
    """The tokenizer that matches the backbone (the router's `Preprocessor`)."""
    return WordPieceTokenizer(shipped_backbone().tokenizer)


def models_dir_of(settings: InferenceSettings) -> Path:
    return settings.models_dir if settings.models_dir is not None else default_models_dir()


def load_artifact(name: ModelName, settings: InferenceSettings) -> HeadArtifact:
    """The configured head version, checked against the installed backbone."""
    version = settings.intent_version if name == "intent" else settings.duplicate_version
    artifact = load_head(models_dir_of(settings), name, version)
    installed = backbone_id(shipped_backbone())
    if artifact.metadata.backbone_id != installed:
        raise ConfigurationError(
            f"{name} head {artifact.path} was trained on {artifact.metadata.backbone_id}, "
            f"but the installed backbone is {installed}; retrain with `stoker models train-heads`"
        )
    return artifact


def build_backend(
    model: ScoringModel, labels: tuple[str, ...], settings: InferenceSettings
) -> ModelBackend:
    """A backend for an in-memory model, per the device settings."""
    spec = BackendSpec(
        name=model.model_name,
        labels=labels,
        batch_sizes=settings.batch_sizes,
        seq_buckets=settings.seq_buckets,
    )
    precision = device_precision(settings)
    if settings.device is Device.CUDA:
        from stoker.adapters.inference.cuda import CudaBackend

        return CudaBackend(model, spec, precision=precision, replicas=settings.replicas)
    if settings.device is Device.NEURON:
        from stoker.adapters.inference.neuron import NeuronBackend

        return NeuronBackend(model, spec, cores=settings.replicas, precision=precision)
    from stoker.adapters.inference.cpu import cpu_backend

    return cpu_backend(
        model,
        spec,
        runtime=settings.cpu_runtime,
        precision=precision,
        replicas=settings.replicas,
        threads_per_replica=settings.threads_per_replica,
    )


def model_name(name: str) -> ModelName:
    """`name` checked against the models this project serves."""
    if name == "intent":
        return "intent"
    if name == "duplicate":
        return "duplicate"
    raise ConfigurationError(f"unknown model {name!r}; expected intent or duplicate")


def load_backend(
    name: str,
    device: Device | str | None = None,
    *,
    settings: InferenceSettings | None = None,
) -> ModelBackend:
    """The compiled model for `name` (call `warm()` before serving).

    `device` (cpu | cuda | neuron) overrides STOKER_INFERENCE_DEVICE; everything else
    comes from `settings`, by default read from the environment.
    """
    settings = settings or load_inference_settings()
    if device is not None:
        try:
            settings = settings.model_copy(update={"device": Device(device)})
        except ValueError as exc:
            raise ConfigurationError(
                f"unknown inference device {device!r}; expected cpu, cuda or neuron"
            ) from exc
    checked = model_name(name)
    artifact = load_artifact(checked, settings)
    model = ScoringModel(checked, shared_backbone(), artifact.head)
    return build_backend(model, artifact.metadata.labels, settings)


def load_models(spec: str, *, models: tuple[str, ...] = ("intent", "duplicate")) -> ModelSet:
    """Load the models named by `spec`.

    `spec` is a compile target of the model registry (`cpu`, `cuda`, `neuron`), or
    `package.module:factory`, a callable taking the model names and returning a ModelSet
    (how a deployment plugs in its own backends).
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"backend factory {spec!r} cannot be imported: {exc}") from exc
        result = factory(models)
        if not isinstance(result, ModelSet):
            raise ConfigurationError(f"backend factory {spec!r} returned {type(result).__name__}")
        return result
    return _from_registry(spec, models)


def _from_registry(target: str, models: tuple[str, ...]) -> ModelSet:
    backends: dict[str, ModelBackend] = {}
    for name in models:
        if name not in ("intent", "duplicate"):
            raise ConfigurationError(f"unknown model {name!r}; expected intent or duplicate")
        backends[name] = load_backend(name, target)
    # Workers are shared by every model: as many batches run at once as one backend has
    # replicas (the cores they were laid out on), never more.
    workers = max(int(getattr(b, "replicas", 1)) for b in backends.values())
    return ModelSet(backends, load_preprocessor(), workers)
