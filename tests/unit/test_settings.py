"""Settings come from STOKER_* variables; a bad one stops the process with a clear message."""

from __future__ import annotations

import pytest

from stoker.app.runtime import launcher_config, monitor_lease
from stoker.core.errors import ConfigurationError
from stoker.lifecycle.capacity import PeerConfig
from stoker.settings import Mode, StoreKind, load_settings


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


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STOKER_OIDC_ISSUER": "https://idp"}, "STOKER_OIDC_AUDIENCE is required when"),
        (
            {"STOKER_OIDC_ISSUER": "https://idp", "STOKER_OIDC_AUDIENCE": "stoker"},
            "STOKER_OIDC_ISSUER needs exactly one of STOKER_OIDC_KEY_FILE",
        ),
        (
            {
                "STOKER_OIDC_ISSUER": "https://idp",
                "STOKER_OIDC_AUDIENCE": "stoker",
                "STOKER_OIDC_KEY_FILE": "/k.pem",
                "STOKER_OIDC_JWKS_FILE": "/k.json",
            },
            "(got STOKER_OIDC_KEY_FILE, STOKER_OIDC_JWKS_FILE)",
        ),
        ({"STOKER_OIDC_KEY_FILE": "/k.pem"}, "STOKER_OIDC_ISSUER is required when"),
        (
            {"STOKER_OIDC_ALGORITHMS": '["RS256", "HS256"]'},
            "STOKER_OIDC_ALGORITHMS: Value error, ['HS256'] not allowed",
        ),
        ({"STOKER_OIDC_ALGORITHMS": '["none"]'}, "STOKER_OIDC_ALGORITHMS: Value error"),
        (
            {"STOKER_OIDC_JWKS_URL": "http://idp.example/certs"},
            "STOKER_OIDC_JWKS_URL: Value error, expected an https:// URL",
        ),
        (
            {"STOKER_OIDC_ROLE_MAP": '{"ml": "owner"}'},
            "STOKER_OIDC_ROLE_MAP['ml']: Input should be",
        ),
        ({"STOKER_API_RATE_PER_S": "-1"}, "STOKER_API_RATE_PER_S: Input should be greater"),
        (
            {"STOKER_TEAM_MAX_IN_FLIGHT_OVERRIDES": '{"search": -2}'},
            "STOKER_TEAM_MAX_IN_FLIGHT_OVERRIDES: Value error, quotas must be >= 0",
        ),
    ],
)
def test_auth_settings_are_checked_naming_each_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """An OIDC issuer needs an audience and exactly one key source; only public-key
    algorithms; an https JWKS URL; known roles; no negative rates or quotas."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert expected in str(info.value)


def test_a_complete_oidc_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issuer, audience and one key source; a loopback http JWKS URL is allowed."""
    monkeypatch.setenv("STOKER_OIDC_ISSUER", "https://idp.example/realms/ml")
    monkeypatch.setenv("STOKER_OIDC_AUDIENCE", "stoker")
    monkeypatch.setenv("STOKER_OIDC_JWKS_URL", "http://127.0.0.1:8443/certs")
    monkeypatch.setenv("STOKER_OIDC_ROLE_MAP", '{"ml-admins": "admin"}')
    settings = load_settings()
    assert settings.oidc_jwks_url == "http://127.0.0.1:8443/certs"
    assert settings.oidc_role_map == {"ml-admins": "admin"}


@pytest.mark.parametrize(
    ("mode", "store", "expected"),
    [
        ("embedded", None, StoreKind.SQLITE),
        ("kafka", None, StoreKind.DYNAMODB),
        ("dynamodb", None, StoreKind.DYNAMODB),
        ("kafka", "sqlite", StoreKind.SQLITE),
        ("embedded", "dynamodb", StoreKind.DYNAMODB),
    ],
)
def test_the_store_follows_the_mode_unless_chosen(
    monkeypatch: pytest.MonkeyPatch, mode: str, store: str | None, expected: StoreKind
) -> None:
    """STOKER_STORE picks the job store apart from the bus: Kafka with SQLite on one machine."""
    monkeypatch.setenv("STOKER_MODE", mode)
    if store is None:
        monkeypatch.delenv("STOKER_STORE", raising=False)
    else:
        monkeypatch.setenv("STOKER_STORE", store)
    assert load_settings().store_kind is expected


def test_the_dynamodb_mode_refuses_another_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its events are the job table's stream: the error says so and names the setting."""
    monkeypatch.setenv("STOKER_MODE", "dynamodb")
    monkeypatch.setenv("STOKER_STORE", "sqlite")
    with pytest.raises(ConfigurationError, match="STOKER_STORE: the dynamodb mode"):
        load_settings()


def test_lease_timings_reach_the_launchers_and_the_monitor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The launchers' heartbeat, lease and reconcile interval and the monitor's lease come
    from their settings; unset, they are 1 s heartbeats and 5 s leases."""
    defaults = load_settings()
    assert launcher_config(defaults).peers == PeerConfig(1.0, 5.0, 5.0)
    assert monitor_lease(defaults) == PeerConfig(1.0, 5.0)
    monkeypatch.setenv("STOKER_LAUNCHER_HEARTBEAT_INTERVAL_S", "2")
    monkeypatch.setenv("STOKER_LAUNCHER_LEASE_TTL_S", "9")
    monkeypatch.setenv("STOKER_SLOT_RECONCILE_INTERVAL_S", "30")
    monkeypatch.setenv("STOKER_MONITOR_HEARTBEAT_INTERVAL_S", "3")
    monkeypatch.setenv("STOKER_MONITOR_LEASE_TTL_S", "20")
    monkeypatch.setenv("STOKER_INSTANCE_CAPS", '{"ml.p3.2xlarge": 4}')
    settings = load_settings()
    config = launcher_config(settings)
    assert config.caps == {"ml.p3.2xlarge": 4}
    assert config.peers == PeerConfig(2.0, 9.0, 30.0)
    assert monitor_lease(settings) == PeerConfig(3.0, 20.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"STOKER_LAUNCHER_LEASE_TTL_S": "1.5"},
            "STOKER_LAUNCHER_LEASE_TTL_S must be at least twice "
            "STOKER_LAUNCHER_HEARTBEAT_INTERVAL_S (got 1.5 and 1.0)",
        ),
        (
            {"STOKER_MONITOR_HEARTBEAT_INTERVAL_S": "4", "STOKER_MONITOR_LEASE_TTL_S": "6"},
            "STOKER_MONITOR_LEASE_TTL_S must be at least twice "
            "STOKER_MONITOR_HEARTBEAT_INTERVAL_S (got 6.0 and 4.0)",
        ),
        (
            {"STOKER_LAUNCHER_HEARTBEAT_INTERVAL_S": "0"},
            "STOKER_LAUNCHER_HEARTBEAT_INTERVAL_S: Input should be greater than 0",
        ),
        (
            {"STOKER_SLOT_RECONCILE_INTERVAL_S": "-1"},
            "STOKER_SLOT_RECONCILE_INTERVAL_S: Input should be greater than 0",
        ),
    ],
)
def test_a_lease_shorter_than_two_heartbeats_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """A lease must outlive a missed renewal, or a live process is taken for dead: the error
    names both settings and the values given."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert expected in str(info.value)
