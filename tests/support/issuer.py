"""A test OIDC issuer: a key pair generated in the test, its public key as PEM or JWKS, and
tokens signed with it (or forged in the ways attackers forge them)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://login.example.test/realms/stoker"
AUDIENCE = "stoker-api"

KeyKind = Literal["rsa", "ec"]


@functools.cache
def _private_key(kind: KeyKind, seed: int) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A fresh key per (kind, seed), generated once per test session (RSA takes a while)."""
    del seed  # only part of the cache key: two seeds give two different keys
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Issuer:
    kind: KeyKind = "rsa"
    kid: str = "key-1"
    seed: int = 0
    issuer: str = ISSUER
    audience: str = AUDIENCE

    @property
    def alg(self) -> str:
        return "RS256" if self.kind == "rsa" else "ES256"

    @property
    def private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        return _private_key(self.kind, self.seed)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        algorithm = RSAAlgorithm if self.kind == "rsa" else ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for ana of team search, a submitter, for ten minutes; an override
        of None leaves the claim out, a timedelta is a time that far from now (so a test
        parametrized at collection is still relative to when it runs)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "ana",
            "team": "search",
            "role": "submitter",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(
            {
                k: now + int(v.total_seconds()) if isinstance(v, timedelta) else v
                for k, v in overrides.items()
            }
        )
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides),
            self.private_key,
            algorithm=self.alg,
            headers={"kid": self.kid, **(headers or {})},
        )


def unsigned_token(claims: dict[str, Any]) -> str:
    """alg "none": a token with no signature at all."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hmac_token(claims: dict[str, Any], secret: bytes, kid: str | None = None) -> str:
    """HS256 signed with `secret`: with the issuer's public PEM as the secret, this is the
    key-confusion attack on verifiers that let the token pick the algorithm."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"
