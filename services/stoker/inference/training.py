"""Fit the intent and duplicate heads on a frozen backbone.

The backbone never changes, so every example is embedded exactly once (batched by length
to waste little padding) and the heads are fitted on those fixed features: seconds on two
CPU cores instead of the minutes fine-tuning would take. Seeds fix the data, the split and
the head's initialisation, so a rerun reproduces the same weights and metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from stoker.inference.backbone import MiniLM
from stoker.inference.data import (
    INTENTS,
    LabelledPair,
    LabelledQuery,
    generate_pairs,
    generate_queries,
    split_holdout,
)
from stoker.inference.heads import (
    DUPLICATE_LABELS,
    HeadSpec,
    build_head,
    feature_size,
    pair_features,
    sentence_embedding,
)
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.ports.inference import ModelName, TokenizedInput


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How much data to generate and how to fit. Defaults train both heads in ~1-2 min."""

    intent_examples: int = 2000
    pair_examples: int = 2000
    holdout_fraction: float = 0.2
    seed: int = 7
    hidden: int = 64
    """Hidden units of the MLP head; 0 fits a logistic regression."""
    epochs: int = 150
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    intent_max_len: int = 32
    pair_max_len: int = 128
    embed_batch: int = 64

    def __post_init__(self) -> None:
        if self.intent_examples < 20 or self.pair_examples < 20:
            raise ValueError(
                f"need at least 20 examples per head, got {self.intent_examples} intent "
                f"and {self.pair_examples} pairs"
            )
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.epochs < 1 or self.learning_rate <= 0 or self.embed_batch < 1:
            raise ValueError("epochs, learning_rate and embed_batch must be positive")


@dataclass(frozen=True, slots=True)
class Metrics:
    accuracy: float
    macro_f1: float
    n_train: int
    n_heldout: int
    per_label_f1: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """Tokenized examples with integer labels (indices into `labels`)."""

    inputs: list[TokenizedInput]
    targets: list[int]
    labels: tuple[str, ...]


@dataclass(slots=True)
class TrainedHead:
    name: ModelName
    labels: tuple[str, ...]
    spec: HeadSpec
    head: nn.Sequential
    metrics: Metrics


def intent_sets(tokenizer: WordPieceTokenizer, cfg: TrainConfig) -> tuple[LabelledSet, LabelledSet]:
    """(train, held-out) queries, tokenized."""
    queries = generate_queries(cfg.intent_examples, cfg.seed)
    train, held = split_holdout(queries, cfg.holdout_fraction, cfg.seed)
    index = {label: i for i, label in enumerate(INTENTS)}

    def build(items: Sequence[LabelledQuery]) -> LabelledSet:
        return LabelledSet(
            inputs=[tokenizer.encode(q.text, max_len=cfg.intent_max_len) for q in items],
            targets=[index[q.label] for q in items],
            labels=INTENTS,
        )

    return build(train), build(held)


def pair_sets(tokenizer: WordPieceTokenizer, cfg: TrainConfig) -> tuple[LabelledSet, LabelledSet]:
    """(train, held-out) product pairs, tokenized as packed pairs."""
    pairs = generate_pairs(cfg.pair_examples, cfg.seed + 1)
    train, held = split_holdout(pairs, cfg.holdout_fraction, cfg.seed)

    def build(items: Sequence[LabelledPair]) -> LabelledSet:
        return LabelledSet(
            inputs=[
                tokenizer.encode(p.a.as_text(), p.b.as_text(), max_len=cfg.pair_max_len)
                for p in items
            ],
            targets=[int(p.duplicate) for p in items],
            labels=DUPLICATE_LABELS,
        )

    return build(train), build(held)


Featurizer = Callable[[MiniLM, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def featurizer(name: ModelName) -> Featurizer:
    return sentence_embedding if name == "intent" else pair_features


@torch.no_grad()
def embed(
    backbone: MiniLM,
    tokenizer: WordPieceTokenizer,
    inputs: Sequence[TokenizedInput],
    name: ModelName,
    batch: int = 64,
) -> torch.Tensor:
    """Backbone features of every input, in input order."""
    fn = featurizer(name)
    order = sorted(range(len(inputs)), key=lambda i: inputs[i].length)
    out = torch.empty(len(inputs), feature_size(name, backbone.hidden_size))
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        rows = [inputs[i] for i in idx]
        padded = tokenizer.pad(rows, batch_size=len(rows), seq_len=max(r.length for r in rows))
        feats = fn(
            backbone,
            torch.tensor(padded.input_ids),
            torch.tensor(padded.attention_mask),
            torch.tensor(padded.token_type_ids),
        )
        out[torch.tensor(idx)] = feats
    return out


def fit_head(
    features: torch.Tensor, targets: torch.Tensor, spec: HeadSpec, cfg: TrainConfig
) -> nn.Sequential:
    """Full-batch Adam on fixed features; deterministic for a given seed."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        head = build_head(spec)
    finally:
        torch.random.set_rng_state(generator_state)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    head.train()
    for _ in range(cfg.epochs):
        optimiser.zero_grad()
        loss = loss_fn(head(features), targets)
        loss.backward()
        optimiser.step()
    head.eval()
    for param in head.parameters():
        param.requires_grad_(False)
    return head


def score(predicted: Sequence[int], actual: Sequence[int], labels: Sequence[str]) -> Metrics:
    """Accuracy and macro-F1 (unweighted mean of per-label F1) of predictions."""
    if len(predicted) != len(actual) or not actual:
        raise ValueError("need equally many predictions and targets, at least one")
    correct = sum(p == a for p, a in zip(predicted, actual, strict=True))
    per_label: dict[str, float] = {}
    for index, label in enumerate(labels):
        tp = sum(p == index and a == index for p, a in zip(predicted, actual, strict=True))
        fp = sum(p == index and a != index for p, a in zip(predicted, actual, strict=True))
        fn = sum(p != index and a == index for p, a in zip(predicted, actual, strict=True))
        denom = 2 * tp + fp + fn
        per_label[label] = 2 * tp / denom if denom else 0.0
    return Metrics(
        accuracy=correct / len(actual),
        macro_f1=sum(per_label.values()) / len(per_label),
        n_train=0,
        n_heldout=len(actual),
        per_label_f1=per_label,
    )


def train_head(
    name: ModelName,
    backbone: MiniLM,
    tokenizer: WordPieceTokenizer,
    *,
    train: LabelledSet,
    held: LabelledSet,
    cfg: TrainConfig,
) -> TrainedHead:
    """Embed, fit, and measure on the held-out set."""
    x_train = embed(backbone, tokenizer, train.inputs, name, cfg.embed_batch)
    x_held = embed(backbone, tokenizer, held.inputs, name, cfg.embed_batch)
    spec = HeadSpec(x_train.shape[1], cfg.hidden, len(train.labels))
    head = fit_head(x_train, torch.tensor(train.targets), spec, cfg)
    with torch.no_grad():
        predicted = head(x_held).argmax(dim=-1).tolist()
    metrics = score(predicted, held.targets, train.labels)
    metrics = Metrics(
        accuracy=metrics.accuracy,
        macro_f1=metrics.macro_f1,
        n_train=len(train.targets),
        n_heldout=metrics.n_heldout,
        per_label_f1=metrics.per_label_f1,
    )
    return TrainedHead(name=name, labels=train.labels, spec=spec, head=head, metrics=metrics)


def train_heads(
    backbone: MiniLM, tokenizer: WordPieceTokenizer, cfg: TrainConfig
) -> dict[ModelName, TrainedHead]:
    """Generate data and fit both heads."""
    intent_train, intent_held = intent_sets(tokenizer, cfg)
    pair_train, pair_held = pair_sets(tokenizer, cfg)
    return {
        "intent": train_head(
            "intent", backbone, tokenizer, train=intent_train, held=intent_held, cfg=cfg
        ),
        "duplicate": train_head(
            "duplicate", backbone, tokenizer, train=pair_train, held=pair_held, cfg=cfg
        ),
    }
