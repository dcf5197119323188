"""`stoker fleet demo`'s options: bad values are refused before anything starts, naming the
option."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stoker.cli.main import app


@pytest.mark.parametrize(
    ("option", "value"),
    [("--customers", "0"), ("--workers", "0"), ("--rows", "5"), ("--requests", "-1")],
)
def test_a_bad_size_is_refused_naming_the_option(option: str, value: str, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(app, ["fleet", "demo", option, value, "--data-dir", str(folder)])
    assert result.exit_code == 2
    assert option in result.output
    assert not folder.exists()


def test_the_help_lists_the_sizes() -> None:
    result = CliRunner().invoke(app, ["fleet", "demo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--customers", "--workers", "--rows", "--requests", "--memory-mb"):
        assert option in result.output
