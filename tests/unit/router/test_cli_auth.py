"""`stoker router serve` refuses to serve an open API by accident."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stoker.cli.router import app


@pytest.fixture(autouse=True)
def no_oidc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER", "AUDIENCE", "KEY_FILE", "JWKS_FILE", "JWKS_URL"):
        monkeypatch.delenv(f"STOKER_OIDC_{name}", raising=False)


def test_without_any_way_to_authenticate_serve_stops_saying_what_to_set() -> None:
    """No issuer configured (and no token store yet): exit 2 before loading any model."""
    result = CliRunner().invoke(app, ["serve", "--backend", "no.such:factory"])
    assert result.exit_code == 2
    assert "STOKER_OIDC_ISSUER" in result.output


def test_no_auth_is_refused_off_loopback() -> None:
    """--no-auth (benchmarks, local trials) only on a loopback address."""
    result = CliRunner().invoke(
        app, ["serve", "--no-auth", "--host", "0.0.0.0", "--backend", "no.such:factory"]
    )
    assert result.exit_code == 2
    assert "loopback" in result.output
