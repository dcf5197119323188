"""Entry point of the `stoker` command: one Typer app, one sub-app per area."""

from __future__ import annotations

import typer

from stoker.cli import dev, schemas

app = typer.Typer(
    name="stoker",
    help="Fire-and-forget ML training jobs and fast batched inference, driven by events.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(schemas.app, name="schemas")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
