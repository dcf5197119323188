"""Stoker tokens: shown once, stored as a digest, checked whole; the embedded default's
local token file."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from stoker.adapters.store.memory import MemoryJobStore
from stoker.app.local_token import ensure_local_token
from stoker.auth.tokens import InvalidTokenRequest, TokenAuthenticator, TokenService
from stoker.core.auth import Role, Unauthenticated
from stoker.core.clock import FakeClock
from stoker.core.tokens import split_token


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


async def test_the_store_keeps_a_digest_never_the_secret(store: MemoryJobStore) -> None:
    """The token's text is `stk_<id>_<secret>`; the stored record names the id and holds
    neither the secret nor the text; the id alone does not authenticate."""
    clock = FakeClock()
    issued = await TokenService(store, clock).create("ana", "search", "submitter")
    token_id, secret = split_token(issued.token)
    assert issued.token == f"stk_{token_id}_{secret}"
    stored = await store.get_token(token_id)
    assert stored is not None
    assert secret not in stored.model_dump_json()
    assert len(secret) >= 40  # 32 random bytes
    auth = TokenAuthenticator(store, clock)
    principal = await auth.authenticate(issued.token)
    assert (principal.subject, principal.team, principal.role) == ("ana", "search", Role.SUBMITTER)
    assert principal.credential_id == token_id
    for forged in (f"stk_{token_id}_", f"stk_{token_id}_{secret[:-1]}", f"stk_{token_id}"):
        with pytest.raises(Unauthenticated) as refused:
            await auth.authenticate(forged)
        assert secret not in str(refused.value)


async def test_a_bad_token_request_names_the_field(store: MemoryJobStore) -> None:
    """Team names follow the job team pattern, roles are the three, lifetimes positive."""
    tokens = TokenService(store, FakeClock())
    cases = [
        ({"owner": "ana", "team": "a|b", "role": "viewer"}, "team"),
        ({"owner": "", "team": "search", "role": "viewer"}, "owner"),
        ({"owner": "ana", "team": "search", "role": "root"}, "role"),
    ]
    for args, field in cases:
        with pytest.raises(InvalidTokenRequest) as bad:
            await tokens.create(**args)  # type: ignore[arg-type]
        assert list(bad.value.problems) == [field], args
    with pytest.raises(InvalidTokenRequest) as bad:
        await tokens.create("ana", "search", Role.VIEWER, expires_in=timedelta(0))
    assert list(bad.value.problems) == ["expires_in"]
    assert await store.list_tokens() == []


async def test_the_local_token_is_made_once_and_kept_readable_by_its_owner_only(
    store: MemoryJobStore, tmp_path: Path
) -> None:
    """The first start makes an admin token in a 0600 file; the next start keeps it and
    does not show it again; a revoked one is replaced."""
    clock = FakeClock()
    first = await ensure_local_token(store, clock, tmp_path, owner="me")
    assert first.new
    assert first.principal.role is Role.ADMIN
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert first.path.read_text().strip() == first.token
    again = await ensure_local_token(store, clock, tmp_path, owner="me")
    assert (again.new, again.token) == (False, first.token)

    await TokenService(store, clock).revoke(first.principal.credential_id)
    replaced = await ensure_local_token(store, clock, tmp_path, owner="me")
    assert replaced.new
    assert replaced.token != first.token
    assert stat.S_IMODE(replaced.path.stat().st_mode) == 0o600
