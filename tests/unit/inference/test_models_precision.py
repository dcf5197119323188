"""The accuracy cost of int8 (and any other variant) is measured by `precision_report`."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stoker.adapters.inference import BackendSpec
from stoker.adapters.inference.cpu import TorchScriptBackend
from stoker.app.evaluation import precision_report, score_through
from stoker.inference.config import Precision
from stoker.inference.heads import DUPLICATE_LABELS, ScoringModel
from stoker.inference.tokenizer import WordPieceTokenizer
from stoker.inference.training import LabelledSet
from stoker.ports.inference import ModelName, PaddedBatch, TokenizedInput

SPEC = BackendSpec("duplicate", DUPLICATE_LABELS, batch_sizes=(8,), seq_buckets=(64, 128))


class TableBackend:
    """A fake behind the ModelBackend port: the probability of 'duplicate' for a row is read
    from a table keyed by the row's first word id."""

    def __init__(self, table: dict[int, float]) -> None:
        self._table = table
        self.batch_sizes = (1, 2, 4)
        self.seq_buckets = (8,)
        self.labels = DUPLICATE_LABELS
        self.name: ModelName = "duplicate"
        self.shapes: list[tuple[int, int]] = []

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        self.shapes.append((batch.batch_size, batch.seq_len))
        out = []
        for row in batch.input_ids[: batch.real_rows]:
            p = self._table[row[1]]
            out.append([1.0 - p, p])
        return out

    def warm(self) -> None:
        return None


def _inputs(word_ids: Sequence[int]) -> list[TokenizedInput]:
    return [TokenizedInput((101, w, 102), (0, 0, 0), truncated=False) for w in word_ids]


def test_report_computes_change_agreement_and_drift(tokenizer: WordPieceTokenizer) -> None:
    """Against the reference, a variant that flips one of four predictions shows accuracy
    change -0.25, agreement 0.75 and the largest probability difference."""
    held = LabelledSet(inputs=_inputs([1, 2, 3, 4]), targets=[1, 0, 1, 0], labels=DUPLICATE_LABELS)
    reference = TableBackend({1: 0.9, 2: 0.1, 3: 0.8, 4: 0.2})
    variant = TableBackend({1: 0.9, 2: 0.1, 3: 0.4, 4: 0.25})
    results = precision_report(reference, {"int8": lambda: variant}, tokenizer, held)
    base, int8 = results
    assert base.metrics.accuracy == 1.0
    assert int8.variant == "int8"
    assert int8.metrics.accuracy == 0.75
    assert int8.accuracy_change == pytest.approx(-0.25)
    assert int8.agreement == 0.75
    assert int8.max_prob_diff == pytest.approx(0.4)


def test_score_through_pads_to_allowed_shapes_and_keeps_order(
    tokenizer: WordPieceTokenizer,
) -> None:
    """Inputs are padded to allowed static shapes only, and results come back in input order."""
    backend = TableBackend({w: w / 10 for w in range(1, 8)})
    probs = score_through(backend, tokenizer, _inputs([7, 1, 5, 2, 3, 6, 4]))
    assert [round(p[1], 3) for p in probs] == [0.7, 0.1, 0.5, 0.2, 0.3, 0.6, 0.4]
    assert set(backend.shapes) <= {(1, 8), (2, 8), (4, 8)}


def test_int8_costs_little_accuracy_on_held_out_pairs(
    models: dict[ModelName, ScoringModel],
    held_out: dict[ModelName, LabelledSet],
    tokenizer: WordPieceTokenizer,
) -> None:
    """Dynamic int8 quantization of the real duplicate model keeps nearly every held-out
    prediction of fp32, and the report shows the change (measured on the 60 held-out pairs:
    agreement 0.95, accuracy change -0.017)."""
    model = models["duplicate"]
    reference = TorchScriptBackend(model, SPEC)
    held = held_out["duplicate"]
    results = precision_report(
        reference,
        {"int8": lambda: TorchScriptBackend(model, SPEC, precision=Precision.INT8)},
        tokenizer,
        held,
    )
    int8 = results[1]
    assert int8.agreement >= 0.9
    assert abs(int8.accuracy_change) <= 0.05
    assert int8.accuracy_change == pytest.approx(
        int8.metrics.accuracy - results[0].metrics.accuracy
    )
    assert int8.max_prob_diff > 0.0
