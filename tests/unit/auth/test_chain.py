"""Several authenticators as one: order, which refusal is reported, what passes through."""

from __future__ import annotations

import pytest

from stoker.adapters.auth import ChainAuthenticator, UnrecognisedCredential
from stoker.core.auth import Principal, Role, Unauthenticated
from stoker.core.errors import InfrastructureUnavailable


class Table:
    """An authenticator over a fixed table: credentials with its prefix are its kind."""

    def __init__(
        self, prefix: str, known: dict[str, Principal], error: Exception | None = None
    ) -> None:
        self.prefix = prefix
        self.known = known
        self.error = error
        self.asked: list[str] = []

    async def authenticate(self, credential: str) -> Principal:
        self.asked.append(credential)
        if self.error is not None:
            raise self.error
        if not credential.startswith(self.prefix):
            raise UnrecognisedCredential(f"not a {self.prefix} credential")
        if credential not in self.known:
            raise Unauthenticated(f"unknown {self.prefix} credential")
        return self.known[credential]


ANA = Principal("ana", "search", Role.SUBMITTER, "tok-1")
BO = Principal("bo", "ads", Role.VIEWER, "jwt:bo")


async def test_the_first_authenticator_that_accepts_names_the_principal() -> None:
    """Tokens are asked first; a credential they accept never reaches the JWT check."""
    tokens, jwts = Table("stk_", {"stk_a": ANA}), Table("ey", {"eyB": BO})
    chain = ChainAuthenticator(tokens, jwts)
    assert await chain.authenticate("stk_a") == ANA
    assert jwts.asked == []
    assert await chain.authenticate("eyB") == BO


async def test_the_reason_is_that_of_the_authenticator_that_knew_the_kind() -> None:
    """A bad JWT is refused with the JWT's reason, a bad token with the token's, though
    the other authenticator refused it too."""
    chain = ChainAuthenticator(Table("stk_", {}), Table("ey", {}))
    with pytest.raises(Unauthenticated, match="unknown ey credential"):
        await chain.authenticate("eyX")
    with pytest.raises(Unauthenticated, match="unknown stk_ credential"):
        await chain.authenticate("stk_x")
    with pytest.raises(Unauthenticated, match=r"^unknown credential$"):
        await chain.authenticate("basic-password")


async def test_an_unavailable_issuer_is_not_turned_into_a_refusal() -> None:
    """An error other than a refusal (the issuer's keys unreachable) reaches the caller."""
    down = Table("ey", {}, error=InfrastructureUnavailable("keys could not be fetched"))
    with pytest.raises(InfrastructureUnavailable):
        await ChainAuthenticator(Table("stk_", {}), down).authenticate("eyX")


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one authenticator"):
        ChainAuthenticator()
