"""`stoker settings`: the settings reference, generated from the settings classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stoker.app.settings_docs import render_settings_reference, undocumented

app = typer.Typer(help="The reference of every STOKER_* setting.", no_args_is_help=True)

DEFAULT_PATH = Path("docs/settings.md")


@app.command("docs")
def docs(
    out: Annotated[Path, typer.Option(help="file to write the reference to")] = DEFAULT_PATH,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 if OUT differs instead of writing it")
    ] = False,
) -> None:
    """Write the settings reference (name, variable, type, default, meaning) to OUT."""
    text = render_settings_reference()
    missing = undocumented()
    if missing:
        Console(stderr=True).print(f"[red]settings without a description:[/red] {missing}")
        raise typer.Exit(1)
    if check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            Console(stderr=True).print(
                f"[red]{out} is out of date:[/red] run `stoker settings docs`"
            )
            raise typer.Exit(1)
        Console().print(f"{out} matches the settings classes")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    Console().print(f"wrote {out}")
