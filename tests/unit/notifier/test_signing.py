"""Webhook signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from stoker.notifier import signing

BODY = b'{"idempotency_key":"k1"}'


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    """v1 is hex HMAC-SHA256(secret, "<t>.<body>"), so any receiver can check it."""
    header = signing.sign("s3cret", 1_700_000_000, BODY)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_fresh_valid_signature() -> None:
    """A signature made with the same secret within the tolerance passes."""
    header = signing.sign("s3cret", 1000, BODY)
    signing.verify("s3cret", header, BODY, now=1100)


@pytest.mark.parametrize(
    ("secret", "body", "now", "match"),
    [
        ("other", BODY, 1000, "no v1 signature matches"),
        ("s3cret", BODY + b" ", 1000, "no v1 signature matches"),
        ("s3cret", BODY, 1000 + 301, "outside the 300 s tolerance"),
    ],
)
def test_verify_rejects_wrong_secret_tampered_body_and_replays(
    secret: str, body: bytes, now: int, match: str
) -> None:
    """A different secret, a changed body or an old timestamp all fail."""
    header = signing.sign("s3cret", 1000, BODY)
    with pytest.raises(signing.SignatureInvalid, match=match):
        signing.verify(secret, header, body, now=now)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "garbage"])
def test_verify_rejects_malformed_headers(header: str) -> None:
    """A header without a numeric timestamp or a key=value form is invalid."""
    with pytest.raises(signing.SignatureInvalid):
        signing.verify("s3cret", header, BODY, now=0)


def test_an_empty_secret_is_refused() -> None:
    """Signing with an empty secret would be a signature anyone can forge."""
    with pytest.raises(ValueError, match="empty"):
        signing.sign("", 1, BODY)
