"""Shared inference fixtures: the real backbone and tokenizer, and small heads trained once
per session on generated data (the same code path as `stoker models train-heads`)."""

from __future__ import annotations

import pytest
import torch

from stoker.inference.backbone import BackboneFiles, MiniLM, load_backbone, shipped_backbone
from stoker.inference.heads import ScoringModel
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.inference.training import (
    LabelledSet,
    TrainConfig,
    TrainedHead,
    intent_sets,
    pair_sets,
    train_head,
)
from stoker.ports.inference import ModelName

# Small enough to embed in seconds on two shared cores, large enough for stable metrics.
TINY = TrainConfig(intent_examples=180, pair_examples=300, seed=11)


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    """Tests share a two-core machine; torch would otherwise size its pool by core count."""
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def backbone_files() -> BackboneFiles:
    return shipped_backbone()


@pytest.fixture(scope="session")
def backbone(backbone_files: BackboneFiles) -> MiniLM:
    return load_backbone(backbone_files)


@pytest.fixture(scope="session")
def tokenizer(backbone_files: BackboneFiles) -> WordPieceTokenizer:
    return WordPieceTokenizer(backbone_files.tokenizer)


@pytest.fixture(scope="session")
def held_out(tokenizer: WordPieceTokenizer) -> dict[ModelName, LabelledSet]:
    return {"intent": intent_sets(tokenizer, TINY)[1], "duplicate": pair_sets(tokenizer, TINY)[1]}


@pytest.fixture(scope="session")
def trained(backbone: MiniLM, tokenizer: WordPieceTokenizer) -> dict[ModelName, TrainedHead]:
    intent_train, intent_held = intent_sets(tokenizer, TINY)
    pair_train, pair_held = pair_sets(tokenizer, TINY)
    return {
        "intent": train_head(
            "intent", backbone, tokenizer, train=intent_train, held=intent_held, cfg=TINY
        ),
        "duplicate": train_head(
            "duplicate", backbone, tokenizer, train=pair_train, held=pair_held, cfg=TINY
        ),
    }


@pytest.fixture(scope="session")
def models(
    backbone: MiniLM, trained: dict[ModelName, TrainedHead]
) -> dict[ModelName, ScoringModel]:
    return {name: ScoringModel(name, backbone, head.head) for name, head in trained.items()}
