"""The endpoint's cache and worker settings, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HANDLER = "stoker.training_scripts.forecast_model"


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """
    cache_dir: the disk tier's folder (the endpoint's own: emptied when it starts).
    memory_bytes: the memory tier's bound, counted as the models' serialised size.
    disk_bytes: the disk tier's bound, counted as the artifacts' file size.
    workers: prediction processes; each model lives in one of them.
    handler: module whose `artifact_size`, `load_artifact`, `parse_request` and `predict`
        read and run the models (the Prophet forecast models by default).
    preload: models loaded before the endpoint reports ready.
    max_batch: at most this many predictions of one model that queued together on a
        worker run as one `predict_batch` of the handler (1: each runs alone).
    """

    cache_dir: Path
    memory_bytes: int = 512 * 1024 * 1024
    disk_bytes: int = 4 * 1024 * 1024 * 1024
    workers: int = 2
    handler: str = DEFAULT_HANDLER
    preload: tuple[str, ...] = ()
    max_batch: int = 8

    def __post_init__(self) -> None:
        if self.memory_bytes < 1:
            raise ValueError(f"memory_bytes must be >= 1, got {self.memory_bytes}")
        if self.disk_bytes < 1:
            raise ValueError(f"disk_bytes must be >= 1, got {self.disk_bytes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
