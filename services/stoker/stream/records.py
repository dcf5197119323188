"""Pure record handling of the duplicate stream: a pair record in, a score or a reject out.

No Kafka and no model here: the Faust agent (`stoker.stream.app`) calls these on bytes and
publishes what they return, so every rule below is tested without a broker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson
from pydantic import ValidationError

from stoker.bus.consumer import dead_letter_event
from stoker.core.events import CloudEvent
from stoker.inference.pairs import DuplicatePair, DuplicateScore
from stoker.ports.bus import BusRecord

ErrorKind = Literal["decode", "schema"]

UNKNOWN_PRODUCT_TYPE = "unknown"
"""Window key of pairs whose first product names no product type."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a valid pair, and why (the dead letter's `error_kind`, reason)."""

    kind: ErrorKind
    reason: str


@dataclass(frozen=True, slots=True)
class StoredScore:
    """A row of the scores table: what a pair id scored, for which content."""

    digest: str
    score: float
    truncated: bool

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"digest": self.digest, "score": self.score, "truncated": self.truncated}
        )

    @classmethod
    def from_bytes(cls, raw: object) -> StoredScore | None:
        """The row, or None for anything that is not one (none, or written by another version)."""
        if not isinstance(raw, bytes | bytearray):
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        digest, score, truncated = doc.get("digest"), doc.get("score"), doc.get("truncated")
        if not isinstance(digest, str) or not isinstance(score, int | float):
            return None
        return cls(digest, float(score), bool(truncated))


def parse_pair(value: bytes | None) -> DuplicatePair | Rejected:
    """The pair in a record's value, or why it is not one."""
    if value is None:
        return Rejected("decode", "decode: the record has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejected("decode", f"decode: not JSON: {exc}")
    try:
        return DuplicatePair.model_validate(doc)
    except ValidationError as exc:
        return Rejected("schema", f"schema: {describe(exc)}")


def describe(exc: ValidationError) -> str:
    """Pydantic's errors as `field.path: message; ...`."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def content_digest(pair: DuplicatePair) -> str:
    """What a stored score is valid for: the pair's texts (not its id)."""
    canonical = orjson.dumps(
        [pair.a.model_dump(), pair.b.model_dump()], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def product_type(pair: DuplicatePair) -> str:
    """The window key of a pair: its first product's type."""
    return pair.a.product_type.strip().lower() or UNKNOWN_PRODUCT_TYPE


def score_event(
    pair: DuplicatePair, stored: StoredScore, *, model: str, at: datetime
) -> CloudEvent:
    """The record published on the scores topic (`schemas/duplicate-score.schema.json`)."""
    data = DuplicateScore(
        pair_id=pair.pair_id,
        score=min(1.0, max(0.0, stored.score)),
        truncated=stored.truncated,
        model=model,
    )
    return CloudEvent.wrap(data, time=at)


def dead_letter(record: BusRecord, rejected: Rejected, *, group: str, at: datetime) -> CloudEvent:
    """The record published on the dead-letter topic (`schemas/dead-letter.schema.json`)."""
    return dead_letter_event(
        record, group=group, kind=rejected.kind, reason=rejected.reason, attempts=0, at=at
    )
