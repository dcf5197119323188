"""Tokens for tests: made through the token service into a real token store, like
`stoker auth token create` does."""

from __future__ import annotations

from stoker.auth.tokens import TokenService
from stoker.core.auth import Role
from stoker.core.clock import Clock, SystemClock
from stoker.ports.store import TokenStore


async def mint(
    store: TokenStore,
    owner: str = "ana",
    team: str = "search",
    role: Role = Role.SUBMITTER,
    *,
    clock: Clock | None = None,
) -> str:
    """A new token's text."""
    issued = await TokenService(store, clock or SystemClock()).create(owner, team, role)
    return issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
