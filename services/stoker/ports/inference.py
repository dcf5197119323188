"""The seam between the router (batching, queues, APIs) and the models.

The router tokenizes each request once (`Preprocessor.encode`), groups requests by
sequence-length bucket, pads a group to a static (batch size, bucket) shape
(`Preprocessor.pad`) and hands it to a `ModelBackend` on a worker thread. Compiled
models need static shapes, so a backend only ever sees the shapes it declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ModelName = Literal["intent", "duplicate"]


@dataclass(frozen=True, slots=True)
class TokenizedInput:
    """One request after tokenization, before padding."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    truncated: bool
    """True when the text was longer than the largest bucket and was cut."""

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True, slots=True)
class PaddedBatch:
    """A static-shape batch: every row padded to `seq_len`, rows padded to `batch_size`.

    Arrays are row-major lists of ints so this module needs no numpy; backends convert.
    """

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]]
    real_rows: int
    """How many leading rows are real requests; the rest is padding."""

    @property
    def batch_size(self) -> int:
        return len(self.input_ids)

    @property
    def seq_len(self) -> int:
        return len(self.input_ids[0]) if self.input_ids else 0


class Preprocessor(Protocol):
    def encode(self, text: str, pair: str | None = None, *, max_len: int) -> TokenizedInput:
        """Tokenize one query (or one pair of texts), truncated to `max_len` tokens."""

    def pad(
        self, inputs: Sequence[TokenizedInput], *, batch_size: int, seq_len: int
    ) -> PaddedBatch:
        """Pad to the static shape (batch_size, seq_len)."""


class ModelBackend(Protocol):
    """A compiled model for one head. `run` blocks; the router calls it off the event loop."""

    @property
    def name(self) -> ModelName: ...

    @property
    def labels(self) -> tuple[str, ...]:
        """Output columns: intent class names, or ("different", "duplicate")."""

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Allowed static batch sizes, ascending."""

    @property
    def seq_buckets(self) -> tuple[int, ...]:
        """Allowed static sequence lengths, ascending."""

    def run(self, batch: PaddedBatch) -> list[list[float]]:
        """Probabilities per row (softmax over `labels`), for the real rows only."""

    def warm(self) -> None:
        """Run every (batch size, bucket) once so no request pays for compilation."""
