"""A fake Authenticator: a table of credentials (a test double behind the port)."""

from __future__ import annotations

from stoker.core.auth import Principal, Role, Unauthenticated

ANA = Principal("ana", "search", Role.SUBMITTER, credential_id="tok-ana")
VIEWER = Principal("vi", "search", Role.VIEWER, credential_id="tok-vi")


class TableAuthenticator:
    def __init__(self, known: dict[str, Principal] | None = None) -> None:
        self.known = known if known is not None else {"ana-secret": ANA, "vi-secret": VIEWER}

    async def authenticate(self, credential: str) -> Principal:
        try:
            return self.known[credential]
        except KeyError:
            raise Unauthenticated("unknown token") from None
