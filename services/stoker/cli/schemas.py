"""`stoker schemas`: the JSON Schemas of the event contract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stoker.app.schema_export import render_schemas

app = typer.Typer(help="Export and check the JSON Schemas in schemas/.", no_args_is_help=True)


@app.command("export")
def export(
    out_dir: Annotated[Path, typer.Option(help="folder to write *.schema.json into")] = Path(
        "schemas"
    ),
) -> None:
    """Write one JSON Schema file per event type (and the envelope) into OUT_DIR."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render_schemas().items():
        (out_dir / name).write_text(text, encoding="utf-8")
    Console().print(f"wrote {len(render_schemas())} schemas to {out_dir}")


@app.command("check")
def check(
    schema_dir: Annotated[Path, typer.Option(help="folder holding *.schema.json")] = Path(
        "schemas"
    ),
) -> None:
    """Exit 1 if the files in SCHEMA_DIR differ from the Python types."""
    stale = [
        name
        for name, text in render_schemas().items()
        if not (schema_dir / name).exists()
        or (schema_dir / name).read_text(encoding="utf-8") != text
    ]
    if stale:
        Console(stderr=True).print(f"[red]out of date:[/red] {', '.join(stale)}")
        raise typer.Exit(1)
    Console().print("schemas match the Python types")
