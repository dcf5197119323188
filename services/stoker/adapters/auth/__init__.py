"""Authenticators: OIDC/JWT bearer tokens (PyJWT over `cryptography`) and a chain of several."""

from stoker.adapters.auth.chain import ChainAuthenticator
from stoker.adapters.auth.jwt import ClaimMapping, JwtAuthenticator, JwtConfig
from stoker.core.auth import UnrecognisedCredential

__all__ = [
    "ChainAuthenticator",
    "ClaimMapping",
    "JwtAuthenticator",
    "JwtConfig",
    "UnrecognisedCredential",
]
