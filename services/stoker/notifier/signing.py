"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, sent as
`Stoker-Signature: t=<unix seconds>,v1=<hex digest>`.

Signing the timestamp with the body lets a receiver reject replays older than its
tolerance; `verify` is what a receiver (and our tests) runs.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Stoker-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureInvalid(ValueError):
    """The header is malformed, the digest does not match, or the timestamp is stale."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at `timestamp` (unix seconds)."""
    if not secret:
        raise ValueError("a signing secret must not be empty")
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, now: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> None:
    """Raise SignatureInvalid unless `header` signs `body` within the tolerance."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureInvalid(f"malformed signature field {part!r}")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError) as exc:
        raise SignatureInvalid("missing or non-numeric timestamp") from exc
    if abs(now - timestamp) > tolerance_s:
        raise SignatureInvalid(f"timestamp {timestamp} is outside the {tolerance_s} s tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in fields.get("v1", [])):
        raise SignatureInvalid("no v1 signature matches")
