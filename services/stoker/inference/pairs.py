"""The streaming duplicate-detection contract: a product pair in, a score out.

Pair records are plain JSON (any producer can write them); scores are stoker CloudEvents
keyed by pair id, so a replay after a crash is de-duplicated downstream by that id.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from stoker.core.events import EventData
from stoker.inference.data import ProductRecord

MAX_TITLE_CHARS = 1_000
MAX_PRODUCT_TYPE_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
"""Far more than a model reads (the router cuts a pair to its largest bucket of tokens);
the limits bound what a request or a record may make the router hold and scan."""


class ProductText(BaseModel):
    """The text features of one product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: StrictStr = Field(
        min_length=1, max_length=MAX_TITLE_CHARS, pattern=r"\S", description="must not be blank"
    )
    product_type: StrictStr = Field(default="", max_length=MAX_PRODUCT_TYPE_CHARS)
    description: StrictStr = Field(default="", max_length=MAX_DESCRIPTION_CHARS)

    def as_text(self) -> str:
        """One segment of a packed pair, in the layout the duplicate head was trained on."""
        return ProductRecord(self.title, self.product_type, self.description).as_text()


class DuplicatePair(BaseModel):
    """One record of the pairs topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    SCHEMA_NAME: ClassVar[str] = "duplicate-pair"

    pair_id: StrictStr = Field(min_length=1, max_length=256, description="unique per pair")
    a: ProductText
    b: ProductText


class DuplicateScore(EventData):
    """The score of one pair, published as the data of a CloudEvent keyed by pair id."""

    TYPE = "stoker.duplicate.scored.v1"
    SCHEMA_NAME = "duplicate-score"

    pair_id: str = Field(min_length=1, max_length=256)
    score: float = Field(ge=0.0, le=1.0, description="probability the two are duplicates")
    truncated: bool = Field(description="the pair's text was longer than the largest bucket")
    model: str = Field(description="the backend that scored it")

    def partition_key(self) -> str:
        return self.pair_id
