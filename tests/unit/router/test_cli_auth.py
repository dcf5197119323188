"""`stoker router serve` refuses to serve an open API by accident."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stoker.cli.router import app


@pytest.fixture(autouse=True)
def no_oidc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER", "AUDIENCE", "KEY_FILE", "JWKS_FILE", "JWKS_URL"):
        monkeypatch.delenv(f"STOKER_OIDC_{name}", raising=False)


def test_without_an_issuer_serve_checks_stoker_tokens_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No issuer configured: the router still authenticates stoker tokens (from the job
    store), so serve goes on to load the models (here a factory that does not exist)."""
    monkeypatch.setenv("STOKER_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--backend", "no.such:factory"])
    assert result.exit_code == 2
    assert "no.such:factory" in result.output


def test_no_auth_is_refused_off_loopback() -> None:
    """--no-auth (benchmarks, local trials) only on a loopback address."""
    result = CliRunner().invoke(
        app, ["serve", "--no-auth", "--host", "0.0.0.0", "--backend", "no.such:factory"]
    )
    assert result.exit_code == 2
    assert "loopback" in result.output
