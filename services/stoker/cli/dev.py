"""`stoker dev`: developer tools (real infrastructure on loopback)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Developer tools: start real Kafka and DynamoDB Local.", no_args_is_help=True
)
