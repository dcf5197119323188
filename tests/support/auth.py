"""Tokens for tests: made through the token service into a real token store, like
`stoker auth token create` does."""

from __future__ import annotations

import httpx

from stoker.api.app import create_app
from stoker.auth.tokens import TokenAuthenticator, TokenService
from stoker.core.auth import DEFAULT_TEAM, Role
from stoker.core.clock import Clock, SystemClock
from stoker.lifecycle.jobs import JobService
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


async def api_client(
    service: JobService,
    tokens: TokenStore,
    *,
    owner: str = "ana",
    team: str = DEFAULT_TEAM,
    role: Role = Role.SUBMITTER,
    clock: Clock | None = None,
) -> httpx.AsyncClient:
    """A client of the jobs API over `service`, in process, carrying a new token of `owner`
    in `team` (made in `tokens`, which the API checks)."""
    clock = clock or SystemClock()
    token = await mint(tokens, owner, team, role, clock=clock)
    app = create_app(service, TokenAuthenticator(tokens, clock))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(token)
    )
