"""Stoker's Kafka SASL and TLS settings (`KafkaSecurity`, from STOKER_KAFKA_SECURITY_PROTOCOL,
STOKER_KAFKA_SASL_* and STOKER_KAFKA_SSL_*) in the form Faust and aiokafka take them.

The same settings reach the bus (librdkafka) and the stream (aiokafka through Faust's
`broker_credentials`), so one deployment's secured cluster serves both.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from aiokafka.helpers import create_ssl_context
from faust.auth import Credentials, SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stoker.adapters.bus.kafka.config import KafkaSecurity


@dataclass(frozen=True, slots=True)
class BrokerAuth:
    """How the app's Kafka clients log in: Faust credentials, or none for PLAINTEXT.

    Faust's credentials keep the password out of their repr, and so does this value."""

    credentials: Credentials | None = None

    @property
    def protocol(self) -> str:
        return str(self.aiokafka()["security_protocol"])

    def faust_options(self) -> dict[str, Any]:
        """The Faust app settings: its consumer, producers and admin client all use them."""
        return {} if self.credentials is None else {"broker_credentials": self.credentials}

    def aiokafka(self) -> dict[str, Any]:
        """The same login as keyword arguments of an aiokafka client (secrets included)."""
        return dict(credentials_to_aiokafka_auth(self.credentials))

    def __repr__(self) -> str:
        return f"BrokerAuth(protocol={self.protocol!r})"


def broker_auth(security: KafkaSecurity | None) -> BrokerAuth:
    """Faust credentials for `security` (None or PLAINTEXT: none)."""
    if security is None or security.protocol == "PLAINTEXT":
        return BrokerAuth()
    context = _tls_context(security) if security.uses_tls else None
    if security.uses_sasl:
        return BrokerAuth(
            SASLCredentials(
                username=security.sasl_username,
                password=security.sasl_password,
                mechanism=security.sasl_mechanism,
                ssl_context=context,
            )
        )
    assert context is not None  # SSL without SASL
    return BrokerAuth(SSLCredentials(context))


def _tls_context(security: KafkaSecurity) -> ssl.SSLContext:
    """Verifies the brokers against `ssl_ca_location` (else the system's authorities), with
    the client certificate for mutual TLS when one is set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=security.ssl_ca_location,
        certfile=security.ssl_certificate_location,
        keyfile=security.ssl_key_location,
        password=security.ssl_key_password,
    )
    if not security.ssl_endpoint_identification:
        context.check_hostname = False
    return context
