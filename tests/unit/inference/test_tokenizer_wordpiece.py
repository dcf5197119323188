"""WordPiece preprocessing: the seed's inputs, truncation, pair packing and padding."""

from __future__ import annotations

import pytest

from stoker.inference.tokenizer import WordPieceTokenizer, bucket_for, longest_first
from stoker.ports.inference import TokenizedInput


def test_single_text_is_framed_by_cls_and_sep(tokenizer: WordPieceTokenizer) -> None:
    """A query becomes [CLS] tokens [SEP], all token type 0, not marked truncated."""
    out = tokenizer.encode("Red running shoes", max_len=16)
    assert out.input_ids[0] == tokenizer.cls_id
    assert out.input_ids[-1] == tokenizer.sep_id
    assert out.input_ids[1:-1] == tuple(tokenizer.word_ids("red running shoes"))
    assert out.token_type_ids == (0,) * out.length
    assert out.truncated is False


def test_long_text_is_cut_to_max_len_and_marked(tokenizer: WordPieceTokenizer) -> None:
    """Text longer than the largest bucket keeps max_len tokens, still ends in [SEP], and
    says it was truncated."""
    out = tokenizer.encode("word " * 100, max_len=16)
    assert out.length == 16
    assert out.input_ids[-1] == tokenizer.sep_id
    assert out.truncated is True


def test_pair_is_packed_with_segment_types(tokenizer: WordPieceTokenizer) -> None:
    """A pair becomes [CLS] a [SEP] b [SEP] with type 0 on the first segment, 1 on the second."""
    out = tokenizer.encode("blue mug", "blue coffee mug", max_len=32)
    a, b = tokenizer.word_ids("blue mug"), tokenizer.word_ids("blue coffee mug")
    assert out.input_ids == (tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id)
    assert out.token_type_ids == (0,) * (len(a) + 2) + (1,) * (len(b) + 1)
    assert out.truncated is False


def test_pair_truncation_cuts_the_longer_side_first(tokenizer: WordPieceTokenizer) -> None:
    """A long description cannot push the short record out: the longer side is cut."""
    out = tokenizer.encode("short title", "very long description " * 40, max_len=24)
    assert out.length == 24
    assert out.truncated is True
    assert out.token_type_ids.count(0) == len(tokenizer.word_ids("short title")) + 2
    assert longest_first(3, 50, 10) == (3, 7)
    assert longest_first(30, 30, 10) == (5, 5)


def test_pad_fills_rows_and_batch_with_masked_padding(tokenizer: WordPieceTokenizer) -> None:
    """pad() yields a static (batch, seq) shape; padding has mask 0 and real_rows counts inputs."""
    rows = [tokenizer.encode("a b c", max_len=16), tokenizer.encode("d", max_len=16)]
    batch = tokenizer.pad(rows, batch_size=4, seq_len=8)
    assert (batch.batch_size, batch.seq_len, batch.real_rows) == (4, 8, 2)
    assert batch.attention_mask[0] == [1] * rows[0].length + [0] * (8 - rows[0].length)
    assert batch.attention_mask[2] == [0] * 8
    assert batch.input_ids[3] == [tokenizer.pad_id] * 8
    assert all(len(r) == 8 for r in batch.token_type_ids)


def test_pad_rejects_what_does_not_fit(tokenizer: WordPieceTokenizer) -> None:
    """Too many rows or a row longer than seq_len is a caller error, not silent truncation."""
    row = TokenizedInput(input_ids=(101, 5, 6, 102), token_type_ids=(0, 0, 0, 0), truncated=False)
    with pytest.raises(ValueError, match="batch_size"):
        tokenizer.pad([row, row], batch_size=1, seq_len=8)
    with pytest.raises(ValueError, match="seq_len"):
        tokenizer.pad([row], batch_size=1, seq_len=3)


def test_bucket_for_picks_smallest_fitting_bucket() -> None:
    """A length goes to the smallest bucket that holds it; longer ones go to the largest."""
    buckets = (16, 32, 64)
    assert [bucket_for(n, buckets) for n in (1, 16, 17, 64, 500)] == [16, 16, 32, 64, 64]
