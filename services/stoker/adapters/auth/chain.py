"""Several authenticators behind one: the first that accepts a credential names its principal."""

from __future__ import annotations

from stoker.core.auth import Principal, Unauthenticated, UnrecognisedCredential
from stoker.ports.auth import Authenticator


class ChainAuthenticator:
    """Tries each authenticator in order (stoker tokens first, then OIDC/JWT).

    When all refuse, the reason given is that of the last one that recognised the
    credential (an expired JWT answers "token expired", not "unknown token"); other
    errors, such as an issuer whose keys cannot be fetched, pass through at once.
    """

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise ValueError("a chain needs at least one authenticator")
        self.authenticators = authenticators

    async def authenticate(self, credential: str) -> Principal:
        refusal: Unauthenticated | None = None
        for authenticator in self.authenticators:
            try:
                return await authenticator.authenticate(credential)
            except UnrecognisedCredential:
                continue
            except Unauthenticated as exc:
                refusal = exc
        raise refusal or Unauthenticated("unknown credential")
