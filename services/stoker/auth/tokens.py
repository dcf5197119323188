"""Stoker tokens: made, listed and revoked by an admin (`stoker auth token ...`), checked on
every API request by `TokenAuthenticator`.

Only the digest of a token's secret is stored (`stoker.core.tokens`); the text is handed
out once, by `TokenService.create`.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError

from stoker.core.auth import Principal, Role
from stoker.core.clock import Clock
from stoker.core.errors import StokerError
from stoker.core.tokens import IssuedToken, TokenRecord, issue_token, split_token, verify
from stoker.ports.store import TokenStore


class InvalidTokenRequest(StokerError):
    """A token asked for with a bad owner, team, role or lifetime. `problems` maps each
    field to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class TokenService:
    """Makes, lists and revokes tokens."""

    def __init__(self, store: TokenStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self,
        owner: str,
        team: str,
        role: Role | str,
        *,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> IssuedToken:
        """A new token, stored (its digest). The returned text is the only copy."""
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidTokenRequest({"expires_in": f"must be positive, got {expires_in}"})
        now = self._clock.now()
        try:
            issued = issue_token(
                owner,
                team,
                Role(role),
                now,
                expires_at=None if expires_in is None else now + expires_in,
                description=description,
            )
        except ValueError as exc:  # pydantic's ValidationError, or an unknown role
            raise InvalidTokenRequest(_problems(exc)) from exc
        await self._store.put_token(issued.record)
        return issued

    async def list(self) -> list[TokenRecord]:
        return await self._store.list_tokens()

    async def revoke(self, token_id: str) -> TokenRecord:
        """Revoke at once: the next request with the token is refused. Raises TokenNotFound."""
        return await self._store.revoke_token(token_id, self._clock.now())


class TokenAuthenticator:
    """The `Authenticator` of stoker tokens: one store read per request, by token id."""

    def __init__(self, store: TokenStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def authenticate(self, credential: str) -> Principal:
        token_id, secret = split_token(credential)
        return verify(await self._store.get_token(token_id), secret, self._clock.now())


def _problems(exc: ValueError) -> dict[str, str]:
    if isinstance(exc, ValidationError):
        return {
            ".".join(str(p) for p in err["loc"]) or "<token>": err["msg"]
            for err in exc.errors(include_url=False)
        }
    return {"role": f"expected one of {', '.join(r.value for r in Role)}"}
