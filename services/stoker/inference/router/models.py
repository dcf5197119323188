"""Which models a router process serves: the backends, their preprocessor, the workers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stoker.ports.inference import ModelBackend, Preprocessor


@dataclass(frozen=True, slots=True)
class ModelSet:
    """Backends by model name, the preprocessor they share, and how many run at once."""

    backends: Mapping[str, ModelBackend]
    preprocessor: Preprocessor
    workers: int = 1
