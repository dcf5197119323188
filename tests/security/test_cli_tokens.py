"""`stoker auth token create|list|revoke` on the embedded store: the text once on stdout,
no secret in the listing, a revoked token refused at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.auth.tokens import TokenAuthenticator
from stoker.cli.main import app
from stoker.core.auth import Role, Unauthenticated
from stoker.core.clock import SystemClock
from stoker.core.tokens import split_token


async def _check(data_dir: Path, token: str) -> Role:
    store = SqliteJobStore(data_dir / "jobs.sqlite3")
    await store.start()
    try:
        return (await TokenAuthenticator(store, SystemClock()).authenticate(token)).role
    finally:
        await store.close()


def test_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer token made by the CLI authenticates; listed without its secret; a bad team
    is named; revoked, it is refused and listed as revoked; an unknown id is an error."""
    monkeypatch.setenv("STOKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STOKER_MODE", "embedded")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    made = runner.invoke(
        app,
        ["auth", "token", "create", "--owner", "ana", "--team", "search", "--role", "viewer"],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    token_id, secret = split_token(token)
    assert asyncio.run(_check(tmp_path, token)) is Role.VIEWER

    listed = runner.invoke(app, ["auth", "token", "list"])
    assert listed.exit_code == 0, listed.output
    assert token_id in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout

    bad = runner.invoke(
        app, ["auth", "token", "create", "--owner", "ana", "--team", "a b", "--role", "viewer"]
    )
    assert bad.exit_code == 2
    assert "team" in bad.output

    revoked = runner.invoke(app, ["auth", "token", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(Unauthenticated):
        asyncio.run(_check(tmp_path, token))
    assert "revoked" in runner.invoke(app, ["auth", "token", "list"]).stdout
    unknown = runner.invoke(app, ["auth", "token", "revoke", "0123456789ab"])
    assert unknown.exit_code == 1
