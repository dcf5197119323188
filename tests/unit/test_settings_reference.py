"""docs/settings.md is what the settings classes say, and every setting says what it means."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stoker.app.settings_docs import render_settings_reference, undocumented
from stoker.cli.main import app

REFERENCE = Path(__file__).parents[2] / "docs" / "settings.md"


def test_the_reference_equals_the_settings_classes() -> None:
    """Regenerate with `stoker settings docs` after changing a setting."""
    assert REFERENCE.read_text(encoding="utf-8") == render_settings_reference()


def test_every_setting_has_a_meaning() -> None:
    assert undocumented() == []


def test_the_reference_names_each_variable_with_its_type_and_default() -> None:
    text = render_settings_reference()
    assert "| `STOKER_API_PORT` | integer, >= 1, <= 65535 | `8080` |" in text
    assert "| `STOKER_STORE` | sqlite \\| dynamodb (or unset) | unset |" in text
    assert "`STOKER_NOTIFY_DIGEST_WINDOW_S`" in text


def test_the_check_command_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("# Settings\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["settings", "docs", "--out", str(stale), "--check"]).exit_code == 1
    assert runner.invoke(app, ["settings", "docs", "--out", str(stale)]).exit_code == 0
    assert runner.invoke(app, ["settings", "docs", "--out", str(stale), "--check"]).exit_code == 0
    assert stale.read_text(encoding="utf-8") == render_settings_reference()
