"""Stoker API tokens: their text form, what the store keeps of them and how one is checked.
Pure: no I/O.

A token reads `stk_<id>_<secret>`. The id (12 hex digits) names the stored record: listings,
logs and rate limits show it. The secret (32 random bytes, URL-safe base64) is shown once,
when the token is made; the store keeps only its SHA-256 digest, compared in constant time.
A slow password hash (bcrypt, scrypt) would protect guessable secrets; a 256-bit random
secret cannot be guessed, and SHA-256 keeps the check cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from stoker.core.auth import TEAM_PATTERN, Principal, Role, Unauthenticated, UnrecognisedCredential
from stoker.core.errors import StokerError

TOKEN_PREFIX = "stk"
ID_HEX_DIGITS = 12
SECRET_BYTES = 32
TOKEN_ID_PATTERN = rf"^[0-9a-f]{{{ID_HEX_DIGITS}}}$"


class TokenRecord(BaseModel):
    """What the store keeps of one token: never the secret, only its digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    owner: str = Field(min_length=1, max_length=128, description="the principal's subject")
    team: str = Field(pattern=TEAM_PATTERN)
    role: Role
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    description: str = Field(default="", max_length=200)

    def state(self, now: datetime) -> str:
        """active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(
            subject=self.owner, team=self.team, role=self.role, credential_id=self.token_id
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: the record to store and the one copy of its text."""

    record: TokenRecord
    token: str
    """`stk_<id>_<secret>`: show it once, never store or log it."""


class TokenNotFound(StokerError):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id!r} does not exist")
        self.token_id = token_id


def issue_token(
    owner: str,
    team: str,
    role: Role,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    description: str = "",
) -> IssuedToken:
    """A new token; raises pydantic's ValidationError naming a bad owner, team or role."""
    token_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = TokenRecord(
        token_id=token_id,
        secret_sha256=_digest(secret),
        owner=owner,
        team=team,
        role=role,
        created_at=now,
        expires_at=expires_at,
        description=description,
    )
    return IssuedToken(record=record, token=f"{TOKEN_PREFIX}_{token_id}_{secret}")


def split_token(text: str) -> tuple[str, str]:
    """(id, secret) of a token's text; raises UnrecognisedCredential (without the text) if
    it is not shaped like a stoker token, so a chain can try the next kind."""
    prefix, _, rest = text.partition("_")
    token_id, _, secret = rest.partition("_")
    if (
        prefix != TOKEN_PREFIX
        or len(token_id) != ID_HEX_DIGITS
        or any(c not in "0123456789abcdef" for c in token_id)
        or not secret
    ):
        raise UnrecognisedCredential("the bearer token is not a stoker token")
    return token_id, secret


def verify(record: TokenRecord | None, secret: str, now: datetime) -> Principal:
    """The principal of a presented secret and the record stored under its id; raises
    Unauthenticated when the record is missing, the secret differs, or the token was
    revoked or expired. Unknown id and wrong secret read the same to the caller."""
    if record is None or not hmac.compare_digest(_digest(secret), record.secret_sha256):
        raise Unauthenticated("unknown or invalid token")
    state = record.state(now)
    if state != "active":
        raise Unauthenticated(f"the token was {state}")
    return record.principal()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
