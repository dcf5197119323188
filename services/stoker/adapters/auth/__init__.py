"""Authenticators: OIDC/JWT bearer tokens (PyJWT over `cryptography`) and a chain of several."""

from stoker.adapters.auth.chain import ChainAuthenticator, UnrecognisedCredential
from stoker.adapters.auth.jwt import ClaimMapping, JwtAuthenticator, JwtConfig

__all__ = [
    "ChainAuthenticator",
    "ClaimMapping",
    "JwtAuthenticator",
    "JwtConfig",
    "UnrecognisedCredential",
]
