"""Heads trained on the frozen backbone beat chance clearly; artifacts round-trip by version."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stoker.core.errors import ConfigurationError
from stoker.inference.artifacts import load_head, save_head, versions
from stoker.inference.data import INTENTS
from stoker.inference.training import TrainConfig, TrainedHead, score
from stoker.ports.inference import ModelName

from .conftest import TINY

# Measured with TINY (180 queries, 300 pairs): intent accuracy 1.00, duplicate accuracy
# 0.98 on 60 held-out pairs. The thresholds leave room for float differences across
# platforms, not for a broken model.
INTENT_MIN_ACCURACY = 0.9
DUPLICATE_MIN_F1 = 0.8


def test_intent_head_beats_chance(trained: dict[ModelName, TrainedHead]) -> None:
    """Intent accuracy on held-out queries is far above chance (1/6)."""
    metrics = trained["intent"].metrics
    assert metrics.accuracy > INTENT_MIN_ACCURACY
    assert metrics.n_heldout == round(TINY.intent_examples * TINY.holdout_fraction)
    assert set(metrics.per_label_f1) == set(INTENTS)


def test_duplicate_head_beats_chance(trained: dict[ModelName, TrainedHead]) -> None:
    """Duplicate macro-F1 on held-out pairs (half of them hard attribute variants) is high."""
    metrics = trained["duplicate"].metrics
    assert metrics.macro_f1 > DUPLICATE_MIN_F1
    assert trained["duplicate"].labels == ("different", "duplicate")


def test_score_computes_accuracy_and_macro_f1() -> None:
    """Macro-F1 is the unweighted mean of per-label F1."""
    metrics = score([0, 0, 1, 1], [0, 1, 1, 1], ("x", "y"))
    assert metrics.accuracy == 0.75
    assert metrics.per_label_f1 == {"x": pytest.approx(2 / 3), "y": pytest.approx(0.8)}
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)


def test_train_config_rejects_bad_values() -> None:
    """Validation names the bad value."""
    with pytest.raises(ValueError, match="holdout_fraction"):
        TrainConfig(holdout_fraction=0.0)
    with pytest.raises(ValueError, match="at least 20"):
        TrainConfig(intent_examples=5)


def test_artifacts_are_versioned_and_round_trip(
    tmp_path: Path, trained: dict[ModelName, TrainedHead]
) -> None:
    """Each save is a new version folder; loading gives the same weights and metadata."""
    head = trained["intent"]
    first = save_head(tmp_path, head, "backbone@sha256:x", TINY)
    second = save_head(tmp_path, head, "backbone@sha256:x", TINY)
    assert (first.metadata.version, second.metadata.version) == (1, 2)
    assert versions(tmp_path, "intent") == [1, 2]
    assert (tmp_path / "intent" / "v0002" / "head.safetensors").is_file()

    loaded = load_head(tmp_path, "intent")
    assert loaded.metadata.version == 2
    assert loaded.metadata.labels == head.labels
    assert loaded.metadata.metrics == head.metrics
    assert loaded.metadata.backbone_id == "backbone@sha256:x"
    assert TrainConfig(**loaded.metadata.train_config) == TINY
    for key, value in head.head.state_dict().items():
        assert torch.equal(loaded.head.state_dict()[key], value)
    assert load_head(tmp_path, "intent", version=1).metadata.version == 1


def test_missing_head_says_how_to_train(tmp_path: Path) -> None:
    """Loading from an empty models dir names the command that creates heads."""
    with pytest.raises(ConfigurationError, match="stoker models train-heads"):
        load_head(tmp_path, "duplicate")


def test_malformed_metadata_is_a_configuration_error(
    tmp_path: Path, trained: dict[ModelName, TrainedHead]
) -> None:
    """A hand-edited metadata file stops loading with the file named."""
    saved = save_head(tmp_path, trained["intent"], "b", TINY)
    (saved.path / "metadata.json").write_text('{"format_version": 1}')
    with pytest.raises(ConfigurationError, match="malformed head metadata"):
        load_head(tmp_path, "intent")
