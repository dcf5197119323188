"""The embedded default's ready token, so the first commands work without a setup step.

At `stoker up` and `stoker demo` on the embedded default, the local user gets an admin token
of the default team, stored hashed like any other and written to `<data dir>/api-token`
(mode 0600) where the CLI and the SDK find it. A token file the store still accepts is
kept: the secret is shown once, when it is made, and not again on every start.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from stoker.app.runtime import build_store
from stoker.auth.tokens import TokenAuthenticator, TokenService
from stoker.client import token_file
from stoker.core.auth import DEFAULT_TEAM, Principal, Role, Unauthenticated
from stoker.core.clock import Clock, SystemClock
from stoker.ports.store import TokenStore
from stoker.settings import Settings


@dataclass(frozen=True, slots=True)
class LocalToken:
    path: Path
    """The 0600 file holding the token."""
    principal: Principal
    token: str
    """The token's text (for this process's own calls)."""
    new: bool
    """Made just now: show it once. A kept token is not shown again."""


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "local"


async def ensure_local_token(
    tokens: TokenStore, clock: Clock, data_dir: Path, *, owner: str | None = None
) -> LocalToken:
    """The data folder's token: the one in its file if the store accepts it, else a new
    admin token for `owner` (the local user) written to the file."""
    path = token_file(data_dir)
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        try:
            principal = await TokenAuthenticator(tokens, clock).authenticate(text)
            return LocalToken(path, principal, text, new=False)
        except Unauthenticated:
            pass  # revoked, expired or from another store: make a new one
    issued = await TokenService(tokens, clock).create(
        owner or local_user(),
        DEFAULT_TEAM,
        Role.ADMIN,
        description="the embedded default's local token",
    )
    write_secret_file(path, issued.token)
    return LocalToken(path, issued.record.principal(), issued.token, new=True)


async def prepare_local_token(settings: Settings) -> LocalToken:
    """`ensure_local_token` on the store `settings` name (opened and closed here)."""
    store = build_store(settings)
    await store.start()
    try:
        return await ensure_local_token(store, SystemClock(), settings.data_dir)
    finally:
        await store.close()


def describe(token: LocalToken) -> list[str]:
    """What `stoker up` and `stoker demo` print about the token."""
    who = f"{token.principal.subject} ({token.principal.role.value}, team {token.principal.team})"
    if not token.new:
        return [f"API token for {who}: in {token.path} (the CLI and SDK read it from there)"]
    return [
        f"API token for {who}, shown once:",
        f"  {token.token}",
        f"also saved in {token.path} (mode 0600), where the CLI and SDK find it;"
        " elsewhere: export STOKER_TOKEN=<token>",
    ]


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(temporary, path)
