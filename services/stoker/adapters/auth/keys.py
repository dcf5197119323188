"""Where an OIDC issuer's public keys come from: a PEM file, a JWKS file or a JWKS URL.

Files are read once, when the authenticator is built, so a bad file stops the process with
an error naming its setting instead of refusing every request later. A JWKS URL is fetched
(httpx, with a timeout, no redirects, a size cap) at the first token and cached; a token
signed with a key id the cache does not know triggers one early fetch, at most every
`refetch_min_s`, which is how an issuer's key rotation is picked up.

Each key carries the algorithms it may verify: the configured ones that fit its type (an RSA
key never verifies an ES256 or HS256 signature), so the algorithm list handed to PyJWT never
comes from the token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWTError

from stoker.core.auth import Unauthenticated
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import ConfigurationError, InfrastructureUnavailable

log = structlog.get_logger("stoker.adapters.auth")

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

MAX_JWKS_BYTES = 1 << 20
"""A key set is a few kilobytes; a reply past this is not one."""

_CURVE_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: PublicKey
    algorithms: frozenset[str]
    """The configured algorithms this key may verify (never empty)."""


class KeySource(Protocol):
    async def key_for(self, kid: str | None) -> VerificationKey:
        """The key a token's `kid` names; raises Unauthenticated when there is none."""


def algorithms_for(key: PublicKey, allowed: frozenset[str]) -> frozenset[str]:
    """The algorithms of `allowed` that a key of this type and size can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        fitting = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve_alg = _CURVE_ALGORITHM.get(key.curve.name)
        fitting = {curve_alg} if curve_alg else set()
    else:
        fitting = {"EdDSA"}
    return frozenset(fitting) & allowed


def _usable(key: Any, allowed: frozenset[str], where: str) -> VerificationKey:
    if not isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise ConfigurationError(f"{where}: expected a public key, got {type(key).__name__}")
    algorithms = algorithms_for(key, allowed)
    if not algorithms:
        raise ConfigurationError(
            f"{where}: a {type(key).__name__} verifies none of the accepted algorithms "
            f"{sorted(allowed)} (STOKER_OIDC_ALGORITHMS)"
        )
    return VerificationKey(key, algorithms)


class PemKey:
    """One public key (or the key of one certificate) from a PEM file; every token uses it."""

    def __init__(self, path: Path, allowed: frozenset[str]) -> None:
        where = f"STOKER_OIDC_KEY_FILE ({path})"
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read it: {exc.strerror}") from exc
        try:
            if b"-----BEGIN CERTIFICATE-----" in pem:
                key: Any = x509.load_pem_x509_certificate(pem).public_key()
            else:
                key = load_pem_public_key(pem)
        except ValueError as exc:
            # The message of cryptography's error says nothing of the content; the file may
            # hold a private key by mistake, so none of it is repeated here.
            raise ConfigurationError(f"{where}: not a PEM public key or certificate") from exc
        self._key = _usable(key, allowed, where)

    async def key_for(self, kid: str | None) -> VerificationKey:
        return self._key


def parse_jwks(
    document: Any, allowed: frozenset[str], where: str
) -> dict[str | None, VerificationKey]:
    """The signing keys of a JWKS document by `kid`. Keys that are symmetric (`oct`), meant
    for encryption, of an algorithm not accepted or unreadable are left out; a set with no
    key left is an error."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ConfigurationError(f'{where}: expected a JWKS object {{"keys": [...]}}')
    keys: dict[str | None, VerificationKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(dict(jwk)).key
        except PyJWTError:
            continue
        algorithms = algorithms_for(key, allowed)
        if "alg" in jwk:
            algorithms &= {jwk["alg"]}
        kid = jwk.get("kid")
        if algorithms and (kid is None or isinstance(kid, str)):
            keys[kid] = VerificationKey(key, algorithms)
    if not keys:
        raise ConfigurationError(
            f"{where}: no signing key usable with {sorted(allowed)} (STOKER_OIDC_ALGORITHMS)"
        )
    return keys


def pick(keys: Mapping[str | None, VerificationKey], kid: str | None) -> VerificationKey | None:
    """The key named by `kid`; a token without one may use the only key of the set."""
    if kid is not None:
        return keys.get(kid)
    if len(keys) == 1:
        return next(iter(keys.values()))
    return None


class JwksFile:
    """The keys of a JWKS file, chosen by the token's `kid`."""

    def __init__(self, path: Path, allowed: frozenset[str]) -> None:
        where = f"STOKER_OIDC_JWKS_FILE ({path})"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read it: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"{where}: not JSON ({exc})") from exc
        self._keys = parse_jwks(document, allowed, where)

    async def key_for(self, kid: str | None) -> VerificationKey:
        key = pick(self._keys, kid)
        if key is None:
            raise Unauthenticated("token is signed with a key the issuer's key set does not hold")
        return key


class JwksUrl:
    """The issuer's JWKS, fetched over HTTPS and kept for `cache_s` seconds.

    When a fetch fails, keys fetched before are used until a fetch succeeds again (an
    identity provider's brief outage then does not lock every caller out); with no keys at
    all, requests get `InfrastructureUnavailable` (503), since the caller is not at fault.
    """

    def __init__(
        self,
        url: str,
        allowed: frozenset[str],
        *,
        cache_s: float = 300.0,
        timeout_s: float = 5.0,
        refetch_min_s: float = 30.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._allowed = allowed
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._refetch_min_s = min(refetch_min_s, cache_s)
        self._clock = clock or SystemClock()
        self._transport = transport
        self._keys: dict[str | None, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> VerificationKey:
        key = pick(self._keys, kid) if self._fresh() else None
        if key is None:
            async with self._lock:  # one fetch for every request that waits on it
                key = pick(self._keys, kid) if self._fresh() else None
                if key is None and self._may_fetch():
                    await self._refresh()
                # Keys past their time are still better than none while the issuer is away.
                key = key or pick(self._keys, kid)
        if key is None:
            if not self._keys:
                raise InfrastructureUnavailable(
                    f"the issuer's keys could not be fetched from {self._url}"
                )
            raise Unauthenticated("token is signed with a key the issuer's key set does not hold")
        return key

    def _fresh(self) -> bool:
        return (
            self._fetched_at is not None
            and self._clock.monotonic() - self._fetched_at < self._cache_s
        )

    def _may_fetch(self) -> bool:
        """At most one fetch per `refetch_min_s`, so neither a token with an unknown `kid`
        nor an unreachable issuer makes every request a fetch."""
        return (
            self._tried_at is None
            or self._clock.monotonic() - self._tried_at >= self._refetch_min_s
        )

    async def _refresh(self) -> None:
        self._tried_at = self._clock.monotonic()
        try:
            document = await self._fetch()
            self._keys = parse_jwks(document, self._allowed, f"JWKS at {self._url}")
        except (httpx.HTTPError, ValueError, ConfigurationError) as exc:
            log.warning("jwks fetch failed", url=self._url, error=str(exc))
            return
        self._fetched_at = self._tried_at

    async def _fetch(self) -> Any:
        async with (
            httpx.AsyncClient(
                timeout=self._timeout_s, follow_redirects=False, transport=self._transport
            ) as client,
            client.stream("GET", self._url, headers={"Accept": "application/json"}) as reply,
        ):
            if reply.status_code != 200:
                raise ValueError(f"answered {reply.status_code}")
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"reply is larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)
