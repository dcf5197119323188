"""The authentication port: a bearer credential in, a verified principal out."""

from __future__ import annotations

from typing import Protocol

from stoker.core.auth import Principal


class Authenticator(Protocol):
    async def authenticate(self, credential: str) -> Principal:
        """The principal behind `credential` (the text after `Bearer `); raises
        `stoker.core.auth.Unauthenticated` when it is not valid. Never logs the credential."""
