"""Settings come from STOKER_* variables; a bad one stops the process with a clear message."""

from __future__ import annotations

import pytest

from stoker.core.errors import ConfigurationError
from stoker.settings import Mode, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, stoker runs embedded: no servers to install."""
    monkeypatch.delenv("STOKER_MODE", raising=False)
    assert load_settings().mode is Mode.EMBEDDED


def test_one_value_picks_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """STOKER_MODE=kafka selects the Kafka bus."""
    monkeypatch.setenv("STOKER_MODE", "kafka")
    assert load_settings().mode is Mode.KAFKA


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STOKER_MODE", "rabbit", "STOKER_MODE: Input should be 'embedded', 'kafka' or 'dynamodb'"),
        (
            "STOKER_KAFKA_BOOTSTRAP",
            "localhost",
            "STOKER_KAFKA_BOOTSTRAP: Value error, expected host:port",
        ),
        ("STOKER_LOG_LEVEL", "LOUD", "STOKER_LOG_LEVEL: Value error, expected one of"),
        ("STOKER_KAFKA_PARTITIONS", "0", "STOKER_KAFKA_PARTITIONS: Input should be greater than"),
    ],
)
def test_bad_setting_is_named_with_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """The error names the variable, what it expects and what it got."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert expected in str(info.value)
    assert repr(value) in str(info.value)
