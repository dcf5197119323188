"""Which models a router process serves: the backends, their preprocessor, the workers."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from stoker.core.errors import ConfigurationError
from stoker.inference.ports import ModelBackend, Preprocessor


@dataclass(frozen=True, slots=True)
class ModelSet:
    """Backends by model name, the preprocessor they share, and how many run at once."""

    backends: Mapping[str, ModelBackend]
    preprocessor: Preprocessor
    workers: int = 1


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
    try:
        from stoker.inference import registry
    except ImportError as exc:
        raise ConfigurationError(
            f"model registry unavailable ({exc}); install the inference extra"
        ) from exc
    backends: dict[str, ModelBackend] = {}
    for name in models:
        if name not in ("intent", "duplicate"):
            raise ConfigurationError(f"unknown model {name!r}; expected intent or duplicate")
        backends[name] = registry.load_backend(name, target)
    # Workers are shared by every model: as many batches run at once as one backend has
    # replicas (the cores they were laid out on), never more.
    workers = max(int(getattr(b, "replicas", 1)) for b in backends.values())
    return ModelSet(backends, registry.load_preprocessor(), workers)
