"""Versioned head artifacts: one folder per version under `<models_dir>/<model name>/`.

    <models_dir>/intent/v0003/head.safetensors   the head's weights
    <models_dir>/intent/v0003/metadata.json      labels, head shape, metrics, backbone id,
                                                 training data seed and sizes, created time

A version is written to a temporary folder and renamed into place, so a reader never sees
half an artifact; the highest version number is the latest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from stoker.core.errors import ConfigurationError
from stoker.inference.heads import HeadSpec, build_head
from stoker.inference.training import Metrics, TrainConfig, TrainedHead
from stoker.ports.inference import ModelName

FORMAT_VERSION = 1
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True, slots=True)
class HeadMetadata:
    name: ModelName
    version: int
    labels: tuple[str, ...]
    spec: HeadSpec
    metrics: Metrics
    backbone_id: str
    created_at: str
    train_config: dict[str, Any]

    def to_json(self) -> str:
        raw = asdict(self)
        raw["format_version"] = FORMAT_VERSION
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> HeadMetadata:
        try:
            raw = json.loads(text)
            if raw.get("format_version") != FORMAT_VERSION:
                raise ConfigurationError(
                    f"{source}: unsupported format_version {raw.get('format_version')!r}"
                )
            return cls(
                name=raw["name"],
                version=int(raw["version"]),
                labels=tuple(raw["labels"]),
                spec=HeadSpec(**raw["spec"]),
                metrics=Metrics(**raw["metrics"]),
                backbone_id=str(raw["backbone_id"]),
                created_at=str(raw["created_at"]),
                train_config=dict(raw["train_config"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{source}: malformed head metadata ({exc})") from exc


@dataclass(slots=True)
class HeadArtifact:
    metadata: HeadMetadata
    head: nn.Sequential
    path: Path


def versions(models_dir: Path, name: ModelName) -> list[int]:
    """Saved versions of a model, ascending."""
    root = models_dir / name
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _VERSION_DIR.match(child.name)
        if match and (child / "metadata.json").is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def save_head(
    models_dir: Path, trained: TrainedHead, backbone_id: str, cfg: TrainConfig
) -> HeadArtifact:
    """Write the next version of `trained.name` and return it."""
    from safetensors.torch import save_file

    root = models_dir / trained.name
    root.mkdir(parents=True, exist_ok=True)
    existing = versions(models_dir, trained.name)
    version = (existing[-1] if existing else 0) + 1
    metadata = HeadMetadata(
        name=trained.name,
        version=version,
        labels=trained.labels,
        spec=trained.spec,
        metrics=trained.metrics,
        backbone_id=backbone_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        train_config=asdict(cfg),
    )
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        state = {k: v.contiguous() for k, v in trained.head.state_dict().items()}
        save_file(state, str(staging / "head.safetensors"))
        (staging / "metadata.json").write_text(metadata.to_json())
        final = root / f"v{version:04d}"
        # rename is atomic within one filesystem; a concurrent trainer that picked the
        # same number fails here instead of overwriting.
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return HeadArtifact(metadata=metadata, head=trained.head, path=final)


def load_head(models_dir: Path, name: ModelName, version: int | None = None) -> HeadArtifact:
    """A saved head (the latest version unless `version` is given)."""
    from safetensors.torch import load_file

    available = versions(models_dir, name)
    if not available:
        raise ConfigurationError(
            f"no trained {name} head under {models_dir / name}; run `stoker models train-heads`"
        )
    chosen = available[-1] if version is None else version
    if chosen not in available:
        raise ConfigurationError(f"{name} head version {chosen} not found; have {available}")
    path = models_dir / name / f"v{chosen:04d}"
    metadata = HeadMetadata.from_json((path / "metadata.json").read_text(), path)
    head = build_head(metadata.spec)
    try:
        head.load_state_dict(load_file(str(path / "head.safetensors")))
    except (RuntimeError, OSError) as exc:
        raise ConfigurationError(f"{path}: head weights do not load ({exc})") from exc
    head.eval()
    for param in head.parameters():
        param.requires_grad_(False)
    return HeadArtifact(metadata=metadata, head=head, path=path)
