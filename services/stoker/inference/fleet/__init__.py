"""The multi-model endpoint's engine: every model under an object-store prefix served from
one process group, loaded on first use (one load per model however many callers wait),
kept in a memory tier and a disk tier, each bounded in bytes and evicted least recently
used first, predicted on worker processes."""

from __future__ import annotations

from stoker.inference.fleet.config import FleetConfig
from stoker.inference.fleet.errors import (
    AlreadyLoaded,
    BadModelName,
    FleetError,
    InvalidPayload,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotLoaded,
    ModelTooLarge,
)
from stoker.inference.fleet.fleet import LoadedModel, ModelFleet, Prediction

__all__ = [
    "AlreadyLoaded",
    "BadModelName",
    "FleetConfig",
    "FleetError",
    "InvalidPayload",
    "LoadedModel",
    "ModelFleet",
    "ModelLoadFailed",
    "ModelNotFound",
    "ModelNotLoaded",
    "ModelTooLarge",
    "Prediction",
]
