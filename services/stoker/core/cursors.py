"""Positions in newest-first listings, shared by the job and pipeline stores' rules.

Times in keys are UTC, fixed width (`2026-01-31T09:30:00.000000Z`), so text order is time
order; a cursor is a position, base64 of JSON, and is opaque to callers.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson

from stoker.core.errors import StokerError


class InvalidCursor(StokerError, ValueError):
    """A pagination cursor this store did not hand out."""


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_key(moment: datetime) -> str:
    """Sortable text, e.g. 2026-03-01T12:00:00.000000Z (isoformat is faster than strftime)."""
    return as_utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursor(f"malformed cursor {cursor[:40]!r}") from exc
    if not isinstance(position, dict):
        raise InvalidCursor(f"malformed cursor {cursor[:40]!r}")
    return position
