"""Where the SDK (and so the CLI) finds its token when none is given: STOKER_TOKEN, then the
config file, then the embedded default's token file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoker.client import config_path, find_token, token_file
from stoker.core.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("STOKER_TOKEN", "STOKER_CONFIG", "STOKER_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def test_the_lookup_order_is_environment_config_file_token_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each source is used only when the ones before it have no token."""
    assert find_token() is None
    token_file().parent.mkdir()
    token_file().write_text("stk_from_data_dir\n")
    assert token_file().resolve() == tmp_path / ".stoker" / "api-token"
    assert find_token() == "stk_from_data_dir"

    assert config_path() == tmp_path / "xdg" / "stoker" / "config.toml"
    config_path().parent.mkdir(parents=True)
    config_path().write_text('token = "stk_from_config"\n')
    assert find_token() == "stk_from_config"

    monkeypatch.setenv("STOKER_TOKEN", " stk_from_env ")
    assert find_token() == "stk_from_env"


def test_named_config_file_and_data_dir_are_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """STOKER_CONFIG names the config file, STOKER_DATA_DIR the token file's folder; a
    config file without a token falls through to the token file."""
    monkeypatch.setenv("STOKER_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "api-token").write_text("stk_data")
    monkeypatch.setenv("STOKER_CONFIG", str(tmp_path / "my.toml"))
    (tmp_path / "my.toml").write_text('api = "x"\n')
    assert find_token() == "stk_data"


def test_a_broken_config_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOKER_CONFIG", str(tmp_path / "bad.toml"))
    (tmp_path / "bad.toml").write_text("token = \n")
    with pytest.raises(ConfigurationError, match=r"bad\.toml"):
        find_token()
