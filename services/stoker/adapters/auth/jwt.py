"""OIDC/JWT bearer tokens: signature, issuer, audience and time checked by PyJWT, claims
mapped to a principal.

What is checked, in order: the token's size and shape; its `alg` header against the accepted
public-key algorithms (so "none" and HS256 are refused before any key is touched); the key
its `kid` names; the signature, with only the algorithms that key's type can verify (an
RSA public key is never used as an HMAC secret); `iss`, `aud`, `exp` (all required) and
`nbf`/`iat` when present, with `leeway_s` of clock skew; then the claims: the subject claim
becomes the owner, the team claim the team, the role claim (or its mapping) the role.

A verified token is kept in a small cache until it expires, so a client that sends the same
token on every request pays for one signature check, not one per request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from stoker.adapters.auth.keys import KeySource
from stoker.core.auth import Principal, Role, Unauthenticated, UnrecognisedCredential
from stoker.core.clock import Clock, SystemClock

MAX_TOKEN_CHARS = 16_384
"""Identity providers issue tokens of a few kilobytes; past this nothing is parsed."""
MAX_NAME_CHARS = 128
"""The longest subject or team: the job record's owner field holds at most this."""

_ROLE_RANK = {Role.VIEWER: 0, Role.SUBMITTER: 1, Role.ADMIN: 2}
_ROLES_BY_NAME = {role.value: role for role in Role}

# PyJWT's messages can quote parts of the token; each error becomes a fixed sentence.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidKeyError, "token signature does not verify"),
    (jwt.DecodeError, "malformed token"),
)


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """Which claims name the principal. A name is looked up as a whole first, then as a
    dotted path (`realm_access.roles`), so namespaced claims such as
    `https://stoker.example/team` work as they are."""

    subject: str = "sub"
    team: str = "team"
    role: str = "role"
    """A string or a list of strings; with several roles the highest counts."""
    role_map: Mapping[str, Role] = field(default_factory=dict)
    """Role-claim value to stoker role; empty: the values are stoker role names."""
    default_role: Role | None = None
    """The role of a token whose role claim names none; None: such a token is refused."""


@dataclass(frozen=True, slots=True)
class JwtConfig:
    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({"RS256", "ES256"})
    leeway_s: float = 30.0
    claims: ClaimMapping = field(default_factory=ClaimMapping)
    cache_size: int = 1024
    """Verified tokens kept (each until it expires)."""

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ValueError("algorithms must name at least one algorithm")
        if self.leeway_s < 0:
            raise ValueError(f"leeway_s must be >= 0, got {self.leeway_s}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")


class JwtAuthenticator:
    """An `Authenticator` for tokens of one OIDC issuer."""

    def __init__(self, config: JwtConfig, keys: KeySource, *, clock: Clock | None = None) -> None:
        self.config = config
        self._keys = keys
        self._clock = clock or SystemClock()
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, credential: str) -> Principal:
        if credential.count(".") != 2:
            raise UnrecognisedCredential("not a JWT")
        if len(credential) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"token is longer than {MAX_TOKEN_CHARS} characters")
        cached = self._verified.get(credential)
        if cached is not None:
            principal, expires = cached
            if self._clock.now().timestamp() >= expires + self.config.leeway_s:
                del self._verified[credential]
                raise Unauthenticated("token expired")
            self._verified.move_to_end(credential)
            return principal
        claims = await self._verify(credential)
        principal = self._principal(claims)
        self._remember(credential, principal, float(claims["exp"]))
        return principal

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.config.algorithms:
            raise Unauthenticated("token algorithm is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("malformed token")
        key = await self._keys.key_for(kid)
        if alg not in key.algorithms:
            raise Unauthenticated("token algorithm does not fit its key")
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=sorted(key.algorithms),
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_refusal(exc)) from exc

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        names = self.config.claims
        subject = _name(claims, names.subject)
        team = _name(claims, names.team)
        return Principal(
            subject=subject,
            team=team,
            role=self._role(claims),
            # Per subject, not per token: a client that fetches a new token keeps its rate.
            credential_id=f"jwt:{subject}",
        )

    def _role(self, claims: Mapping[str, Any]) -> Role:
        names = self.config.claims
        value = _claim(claims, names.role)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        roles = [r for r in (self._map_role(v) for v in values if isinstance(v, str)) if r]
        if roles:
            return max(roles, key=_ROLE_RANK.__getitem__)
        if names.default_role is not None:
            return names.default_role
        raise Unauthenticated(f"token names no stoker role in its {names.role!r} claim")

    def _map_role(self, value: str) -> Role | None:
        role_map = self.config.claims.role_map
        if role_map:
            return role_map.get(value)
        return _ROLES_BY_NAME.get(value)

    def _remember(self, token: str, principal: Principal, expires: float) -> None:
        if self.config.cache_size == 0:
            return
        self._verified[token] = (principal, expires)
        if len(self._verified) > self.config.cache_size:
            self._verified.popitem(last=False)


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _name(claims: Mapping[str, Any], name: str) -> str:
    """A subject or team: a non-empty string of printable characters that fits the store."""
    value = _claim(claims, name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"token lacks the {name!r} claim (a non-empty string)")
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise Unauthenticated(
            f"token's {name!r} claim is not a name of at most {MAX_NAME_CHARS} printable characters"
        )
    return value


def _refusal(exc: jwt.PyJWTError) -> str:
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return reason
    return "invalid token"
