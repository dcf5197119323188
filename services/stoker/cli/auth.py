"""`stoker auth token create|list|revoke`: the API's tokens, kept (hashed) in the job store.

These commands open the job store itself (STOKER_MODE and the store settings, like the
services): whoever runs them is an operator with the store's credentials, so they need no
token. A new token's text is printed once and is not stored anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table

from stoker.app.runtime import build_store
from stoker.auth.tokens import InvalidTokenRequest, TokenService
from stoker.core.auth import Role
from stoker.core.clock import SystemClock
from stoker.core.tokens import IssuedToken, TokenNotFound, TokenRecord

app = typer.Typer(help="Manage the API's bearer tokens.", no_args_is_help=True)
token_app = typer.Typer(
    help="Create, list and revoke stoker tokens (needs the job store's settings).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
console = Console()
err = Console(stderr=True)

T = TypeVar("T")


def _with_tokens(action: Callable[[TokenService], Awaitable[T]]) -> T:
    from stoker.cli.run import settings_or_exit

    settings = settings_or_exit()

    async def run() -> T:
        store = build_store(settings)
        await store.start()
        try:
            return await action(TokenService(store, SystemClock()))
        finally:
            await store.close()

    return asyncio.run(run())


@token_app.command("create")
def create(
    owner: Annotated[str, typer.Option(help="whose token: the owner of the jobs it submits")],
    team: Annotated[str, typer.Option(help="the team whose jobs it sees")],
    role: Annotated[Role, typer.Option(help="viewer reads; submitter also submits and stops")],
    expires_in_days: Annotated[
        float | None, typer.Option(help="refused after this many days (default: never)")
    ] = None,
    description: Annotated[str, typer.Option(help="a note shown by `list`")] = "",
) -> None:
    """Create a token and print it once."""
    expires_in = None if expires_in_days is None else timedelta(days=expires_in_days)

    async def make(tokens: TokenService) -> IssuedToken:
        return await tokens.create(
            owner, team, role, expires_in=expires_in, description=description
        )

    try:
        issued = _with_tokens(make)
    except InvalidTokenRequest as exc:
        for field, problem in exc.problems.items():
            err.print(f"[red]{field}: {problem}[/red]")
        raise typer.Exit(2) from exc
    record = issued.record
    err.print(
        f"token {record.token_id} for {record.owner} ({record.role.value}, team {record.team})"
        " - shown once, store it now:"
    )
    # The text alone on stdout, so `export STOKER_TOKEN=$(stoker auth token create ...)` works.
    typer.echo(issued.token)


@token_app.command("list")
def list_tokens() -> None:
    """Every token (never a secret): id, owner, team, role, state."""
    tokens: list[TokenRecord] = _with_tokens(lambda service: service.list())
    now = SystemClock().now()
    table = Table(
        Column("id", no_wrap=True),
        "owner",
        "team",
        "role",
        "state",
        "created",
        "expires",
        "description",
    )
    for token in tokens:
        table.add_row(
            token.token_id,
            token.owner,
            token.team,
            token.role.value,
            token.state(now),
            token.created_at.isoformat(timespec="seconds"),
            token.expires_at.isoformat(timespec="seconds") if token.expires_at else "",
            token.description,
        )
    console.print(table)


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="the token's id (see `list`)")]) -> None:
    """Revoke a token: requests with it are refused from now on."""
    try:
        token = _with_tokens(lambda service: service.revoke(token_id))
    except TokenNotFound as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"token {token.token_id} of {token.owner} revoked")
