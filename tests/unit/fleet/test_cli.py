"""`stoker endpoints serve` refuses what would serve an open or unusable endpoint before it
starts anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stoker.cli.main import app


def test_no_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["endpoints", "serve", "--prefix", str(tmp_path), "--no-auth", "--host", "0.0.0.0"],
    )
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_bad_cache_bounds_name_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["endpoints", "serve", "--prefix", str(tmp_path), "--no-auth", "--memory-mb", "0"],
    )
    assert result.exit_code == 2
    assert "memory_bytes" in result.output
