"""Stoker's Kafka SASL and TLS settings as the stream's Faust app and aiokafka take them."""

from __future__ import annotations

import ssl

from faust.auth import SASLCredentials, SSLCredentials

from stoker.adapters.bus.kafka.config import KafkaSecurity
from stoker.stream import StreamSettings, build_app
from stoker.stream.security import broker_auth
from tests.unit.stream.test_agent import models

PASSWORD = "s3cret-password-value"


def scram(protocol: str = "SASL_PLAINTEXT", **tls: object) -> KafkaSecurity:
    return KafkaSecurity(
        protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="stoker",
        sasl_password=PASSWORD,
        **tls,  # type: ignore[arg-type]
    )


def test_plaintext_needs_no_credentials() -> None:
    for security in (None, KafkaSecurity()):
        auth = broker_auth(security)
        assert auth.faust_options() == {}
        assert auth.aiokafka() == {"security_protocol": "PLAINTEXT"}


def test_a_scram_login_becomes_faust_sasl_credentials() -> None:
    auth = broker_auth(scram())
    credentials = auth.faust_options()["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert auth.aiokafka() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "stoker",
        "sasl_plain_password": PASSWORD,
        "ssl_context": None,
    }
    assert PASSWORD not in repr(auth)
    assert PASSWORD not in repr(credentials)


def test_scram_over_tls_verifies_the_brokers_certificate_and_host() -> None:
    options = broker_auth(scram("SASL_SSL")).aiokafka()
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_host_name_checking_can_be_turned_off_but_not_verification() -> None:
    options = broker_auth(scram("SASL_SSL", ssl_endpoint_identification=False)).aiokafka()
    context = options["ssl_context"]
    assert context.check_hostname is False
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_tls_without_sasl_becomes_faust_ssl_credentials() -> None:
    auth = broker_auth(KafkaSecurity(protocol="SSL"))
    assert isinstance(auth.faust_options()["broker_credentials"], SSLCredentials)
    assert auth.aiokafka()["security_protocol"] == "SSL"


def test_the_app_hands_the_credentials_to_faust() -> None:
    built = build_app(
        StreamSettings(app_id="unit-secure"),
        models,
        broker="127.0.0.1:1",
        authenticator=None,
        security=scram("SASL_SSL"),
    )
    credentials = built.app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert credentials.username == "stoker"
    assert credentials.ssl_context is not None
