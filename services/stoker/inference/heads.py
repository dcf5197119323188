"""The two heads on the shared backbone, and the full models a backend compiles.

Both full models take the three tensors of a `PaddedBatch` (`input_ids`, `attention_mask`,
`token_type_ids`, each (batch, seq) int64) and return softmax probabilities
(batch, labels). Everything shape-dependent is computed from tensors, so one traced graph
per static shape is all a backend needs.

* Intent: mean-pooled, L2-normalised sentence embedding -> MLP -> softmax over intents.
* Duplicate: the pair arrives packed as `[CLS] a [SEP] b [SEP]`. A block-diagonal attention
  mask built from `token_type_ids` keeps the two records from attending to each other and
  each segment gets its own position ids, so one pass yields the two sentence embeddings
  `u`, `v` the backbone was trained to produce; the word embeddings of tokens found in
  only one of the records are pooled next to them (see `pair_features`). This keeps the
  router's one-row-per-request static shapes; docs/models.md has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stoker.inference.backbone import MASK_BIAS, MiniLM, key_mask_bias
from stoker.ports.inference import ModelName

DUPLICATE_LABELS = ("different", "duplicate")


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """Shape of a head: `hidden` 0 means plain logistic regression."""

    in_features: int
    hidden: int
    n_labels: int

    def __post_init__(self) -> None:
        if self.in_features < 1 or self.hidden < 0 or self.n_labels < 2:
            raise ValueError(f"invalid head shape {self}")


def build_head(spec: HeadSpec) -> nn.Sequential:
    if spec.hidden == 0:
        return nn.Sequential(nn.Linear(spec.in_features, spec.n_labels))
    return nn.Sequential(
        nn.Linear(spec.in_features, spec.hidden),
        nn.ReLU(),
        nn.Linear(spec.hidden, spec.n_labels),
    )


def _mean_pool(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors where `weights` is 1, L2-normalised; zero for an empty row."""
    w = weights.to(hidden.dtype).unsqueeze(-1)
    summed = (hidden * w).sum(dim=1)
    count = w.sum(dim=1).clamp(min=1.0)
    pooled = summed / count
    return nn.functional.normalize(pooled, p=2.0, dim=-1, eps=1e-6)


def _positions(like: torch.Tensor) -> torch.Tensor:
    # cumsum instead of arange(seq): no Python int from the shape enters the graph, so an
    # ONNX export with dynamic axes stays dynamic.
    return torch.cumsum(torch.ones_like(like), dim=1) - 1


def sentence_embedding(
    backbone: MiniLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
) -> torch.Tensor:
    """(batch, hidden) embedding of single texts, as sentence-transformers computes it."""
    hidden = backbone(
        input_ids, token_type_ids, _positions(input_ids), key_mask_bias(attention_mask)
    )
    return _mean_pool(hidden, attention_mask)


def pair_features(
    backbone: MiniLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
) -> torch.Tensor:
    """(batch, 6*hidden) pair features for packed pairs, both records encoded in one pass.

    `[u, v, |u-v|, u*v]` compares the two sentence embeddings; `[only_a, only_b]` are the
    mean word embeddings of the tokens that appear in one record and not the other. The
    sentence embeddings alone barely separate "red" from "blue" or "6-pack" from
    "12-pack"; the unshared words carry exactly that difference.
    """
    mask = attention_mask.to(torch.int64)
    types = token_type_ids.to(torch.int64)
    seg_a = mask * (1 - types)
    seg_b = mask * types
    visible = (types[:, :, None] == types[:, None, :]) & (mask[:, None, :] == 1)
    bias = (1.0 - visible.float())[:, None, :, :] * MASK_BIAS
    # The second record restarts at position 1, where it would sit after its own [CLS].
    plain = _positions(input_ids)
    positions = torch.where(types == 1, torch.cumsum(types, dim=1), plain)
    hidden = backbone(input_ids, torch.zeros_like(types), positions, bias)
    u = _mean_pool(hidden, seg_a)
    v = _mean_pool(hidden, seg_b)
    # Sums of 0/1 products rather than boolean any(): the same ops in every exporter.
    same_token = (input_ids[:, :, None] == input_ids[:, None, :]).to(torch.int64)
    in_b = (same_token * seg_b[:, None, :]).sum(dim=-1).clamp(max=1)
    in_a = (same_token * seg_a[:, None, :]).sum(dim=-1).clamp(max=1)
    not_cls = (plain > 0).to(torch.int64)
    words = backbone.embeddings.word_embeddings(input_ids)
    only_a = _mean_pool(words, seg_a * (1 - in_b) * not_cls)
    only_b = _mean_pool(words, seg_b * (1 - in_a))
    return torch.cat([u, v, (u - v).abs(), u * v, only_a, only_b], dim=-1)


def feature_size(name: ModelName, hidden_size: int) -> int:
    return hidden_size if name == "intent" else 6 * hidden_size


class ScoringModel(nn.Module):
    """Backbone + head + softmax: what a backend traces and runs."""

    def __init__(self, name: ModelName, backbone: MiniLM, head: nn.Module) -> None:
        super().__init__()
        self.model_name: ModelName = name
        self.backbone = backbone
        self.head = head

    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        if self.model_name == "intent":
            return sentence_embedding(self.backbone, input_ids, attention_mask, token_type_ids)
        return pair_features(self.backbone, input_ids, attention_mask, token_type_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        logits = self.head(self.features(input_ids, attention_mask, token_type_ids))
        # Softmax in fp32 whatever the compute precision, so probabilities sum to 1.
        return torch.softmax(logits.float(), dim=-1)
