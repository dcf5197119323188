"""Kafka SASL/TLS settings: validated where they are built, mapped to librdkafka's names,
and never shown: not in reprs, not in errors."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from stoker.adapters.bus.kafka import KafkaConfig, KafkaLoginRefused, KafkaSecurity
from stoker.adapters.bus.kafka.errors import LoginWatch, translate
from stoker.app.runtime import kafka_security
from stoker.core.errors import ConfigurationError
from stoker.settings import Settings

PASSWORD = "pa55-w0rd-never-shown"


def test_scram_over_tls_maps_to_librdkafka_settings() -> None:
    """SASL_SSL with SCRAM: mechanism, login, the CA to trust and host name checking."""
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="stoker",
        sasl_password=PASSWORD,
        ssl_ca_location="/etc/kafka/ca.pem",
    )
    settings = KafkaConfig(bootstrap="b:9096", security=security).librdkafka()
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (settings["sasl.username"], settings["sasl.password"]) == ("stoker", PASSWORD)
    assert settings["ssl.ca.location"] == "/etc/kafka/ca.pem"
    assert settings["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.certificate.location" not in settings


def test_the_default_is_plaintext_without_a_login() -> None:
    """No security settings: plaintext, and no SASL or TLS keys at all."""
    settings = KafkaConfig(bootstrap="b:9092").librdkafka()
    assert settings["security.protocol"] == "PLAINTEXT"
    assert not [k for k in settings if k.startswith(("sasl.", "ssl."))]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "SASL_PLAINTEXT"}, "needs sasl_mechanism, sasl_username, sasl_password"),
        (
            {
                "protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            "sasl_mechanism must be one of",
        ),
        ({"sasl_username": "u"}, "SASL settings need a SASL protocol"),
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "u",
                "sasl_password": "p",
                "ssl_ca_location": "/ca",
            },
            "TLS settings need protocol SSL or SASL_SSL",
        ),
        ({"protocol": "SSL", "ssl_certificate_location": "/c"}, "come together"),
        ({"protocol": "TLS"}, "protocol must be one of"),
    ],
)
def test_settings_that_do_not_fit_together_are_refused(
    fields: dict[str, str], message: str
) -> None:
    """Each inconsistent combination is refused at construction, saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        KafkaSecurity(**fields)  # type: ignore[arg-type]


def test_secrets_stay_out_of_reprs() -> None:
    """Neither the SASL password nor the key's password appears in the config's repr."""
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="stoker",
        sasl_password=PASSWORD,
        ssl_certificate_location="/c.pem",
        ssl_key_location="/k.pem",
        ssl_key_password=PASSWORD + "-key",
    )
    shown = repr(KafkaConfig(bootstrap="b:9096", security=security))
    assert "stoker" in shown
    assert PASSWORD not in shown


def test_client_settings_cannot_bypass_the_security_settings() -> None:
    """SASL and TLS keys in client_settings are refused: they go through `security`."""
    with pytest.raises(ValueError, match=r"sasl\.password"):
        KafkaConfig(bootstrap="b:9092", client_settings={"sasl.password": "x"})


def test_settings_build_the_security_and_hide_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STOKER_KAFKA_* become the bus's KafkaSecurity; the settings' repr masks the
    password."""
    monkeypatch.setenv("STOKER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STOKER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STOKER_KAFKA_SASL_USERNAME", "stoker")
    monkeypatch.setenv("STOKER_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STOKER_KAFKA_SSL_CA_LOCATION", "/etc/ca.pem")
    settings = Settings()
    assert PASSWORD not in repr(settings)
    security = kafka_security(settings)
    assert security.sasl_password == PASSWORD
    assert security.ssl_ca_location == "/etc/ca.pem"


def test_inconsistent_settings_name_the_variables() -> None:
    """A SASL protocol without a login is a ConfigurationError naming the settings."""
    with pytest.raises(ConfigurationError, match="STOKER_KAFKA_SASL_"):
        kafka_security(Settings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_a_refused_login_is_a_clear_error_that_is_not_retried() -> None:
    """librdkafka's authentication and TLS failures become KafkaLoginRefused: not
    retriable, naming the settings to check; the watch remembers one reported by the
    error callback."""
    refused = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid")
    error = translate(refused, "producer connect")
    assert isinstance(error, KafkaLoginRefused)
    assert error.retriable is False
    assert "SASL and TLS settings" in str(error)
    watch = LoginWatch()
    watch.check("connect")
    watch(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.check("connect")
    watch(KafkaError(KafkaError._SSL, "certificate verify failed"))
    with pytest.raises(KafkaLoginRefused, match="certificate verify failed"):
        watch.check("connect")
