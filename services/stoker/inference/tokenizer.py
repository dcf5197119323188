"""WordPiece preprocessing for the MiniLM backbone: the `Preprocessor` the router calls.

Produces the seed's model inputs: `input_ids`, `attention_mask` and `token_type_ids`
(position ids are derived inside the model from the segment layout, so a compiled model
never depends on the caller computing them). A pair is packed BERT style as
`[CLS] a [SEP] b [SEP]` with token type 0 for the first segment and 1 for the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stoker.core.errors import ConfigurationError
from stoker.ports.inference import PaddedBatch, TokenizedInput

# [CLS] text [SEP] for a single text; [CLS] a [SEP] b [SEP] for a pair.
_SINGLE_SPECIALS = 2
_PAIR_SPECIALS = 3


class WordPieceTokenizer:
    """Uncased WordPiece tokenizer read from a local `tokenizer.json` (never downloaded)."""

    def __init__(self, tokenizer_json: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "the inference extra is not installed: pip install 'stoker[inference]'"
            ) from exc
        if not tokenizer_json.is_file():
            raise ConfigurationError(f"tokenizer file not found: {tokenizer_json}")
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        # The shipped file pads and truncates to 128 on its own; this class owns both.
        self._tok.no_truncation()
        self._tok.no_padding()
        self.cls_id = self._required_id("[CLS]")
        self.sep_id = self._required_id("[SEP]")
        self.pad_id = self._required_id("[PAD]")

    def _required_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise ConfigurationError(f"tokenizer vocabulary has no {token} token")
        return int(token_id)

    def word_ids(self, text: str) -> list[int]:
        """WordPiece ids of `text` without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str, pair: str | None = None, *, max_len: int) -> TokenizedInput:
        """Tokenize one query or one pair, cut to `max_len` tokens including specials.

        A pair is cut longest-first (one token at a time from whichever side is longer),
        so a long description cannot push the other record out of the sequence.
        """
        first = self.word_ids(text)
        if pair is None:
            if max_len < _SINGLE_SPECIALS + 1:
                raise ValueError(f"max_len must be at least 3 for a text, got {max_len}")
            budget = max_len - _SINGLE_SPECIALS
            truncated = len(first) > budget
            ids = [self.cls_id, *first[:budget], self.sep_id]
            return TokenizedInput(
                input_ids=tuple(ids), token_type_ids=(0,) * len(ids), truncated=truncated
            )
        if max_len < _PAIR_SPECIALS + 2:
            raise ValueError(f"max_len must be at least 5 for a pair, got {max_len}")
        second = self.word_ids(pair)
        keep_a, keep_b = longest_first(len(first), len(second), max_len - _PAIR_SPECIALS)
        truncated = keep_a < len(first) or keep_b < len(second)
        seg_a = [self.cls_id, *first[:keep_a], self.sep_id]
        seg_b = [*second[:keep_b], self.sep_id]
        return TokenizedInput(
            input_ids=tuple(seg_a + seg_b),
            token_type_ids=(0,) * len(seg_a) + (1,) * len(seg_b),
            truncated=truncated,
        )

    def pad(
        self, inputs: Sequence[TokenizedInput], *, batch_size: int, seq_len: int
    ) -> PaddedBatch:
        """Pad rows to `seq_len` and the batch to `batch_size` rows of [PAD] (mask 0)."""
        if len(inputs) > batch_size:
            raise ValueError(f"{len(inputs)} inputs do not fit batch_size {batch_size}")
        ids: list[list[int]] = []
        mask: list[list[int]] = []
        types: list[list[int]] = []
        for item in inputs:
            if item.length > seq_len:
                raise ValueError(f"input of {item.length} tokens does not fit seq_len {seq_len}")
            fill = seq_len - item.length
            ids.append([*item.input_ids, *([self.pad_id] * fill)])
            mask.append([1] * item.length + [0] * fill)
            types.append([*item.token_type_ids, *([0] * fill)])
        for _ in range(batch_size - len(inputs)):
            ids.append([self.pad_id] * seq_len)
            mask.append([0] * seq_len)
            types.append([0] * seq_len)
        return PaddedBatch(
            input_ids=ids, attention_mask=mask, token_type_ids=types, real_rows=len(inputs)
        )


def longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of each side to keep so that their sum fits `budget`."""
    keep_a, keep_b = len_a, len_b
    while keep_a + keep_b > budget:
        if keep_a > keep_b:
            keep_a -= 1
        else:
            keep_b -= 1
    return keep_a, keep_b


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens, or the largest one (input is cut)."""
    for bucket in sorted(buckets):
        if length <= bucket:
            return bucket
    return max(buckets)
