"""The Kafka bus over a real broker's secure listeners: SASL/SCRAM and SCRAM over TLS carry
events with the right credentials; wrong credentials or an untrusted certificate fail at
start with a clear error, well before the connect timeout, and never show the password."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from stoker.adapters.bus.kafka import KafkaBus, KafkaConfig, KafkaLoginRefused, KafkaSecurity
from stoker.app.runtime import build_bus
from stoker.devinfra import KafkaAccess
from stoker.settings import Mode, Settings

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT_S = 20.0


def _sasl(access: KafkaAccess, mechanism: str, password: str | None = None) -> KafkaConfig:
    assert access.sasl_bootstrap is not None
    return KafkaConfig(
        bootstrap=access.sasl_bootstrap,
        partitions=1,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        security=KafkaSecurity(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username=access.scram_username,
            sasl_password=password if password is not None else access.scram_password,
        ),
    )


def _tls(access: KafkaAccess, *, trusted: bool = True) -> KafkaConfig:
    assert access.tls_bootstrap is not None
    return KafkaConfig(
        bootstrap=access.tls_bootstrap,
        partitions=1,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        security=KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=access.scram_username,
            sasl_password=access.scram_password,
            # Untrusted: the system's authorities, none of which signed the broker's key.
            ssl_ca_location=str(access.ca_location) if trusted else None,
        ),
    )


async def _round_trip(bus: KafkaBus) -> list[bytes]:
    """Create a topic, publish two records, read them back through a group member."""
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        await bus.publish_raw(topic, "k", b"one")
        await bus.publish_raw(topic, "k", b"two")
        member = bus.source(f"g-{topic}", [topic])
        values: list[bytes] = []
        async with asyncio.timeout(120):
            while len(values) < 2:
                values += [r.value for r in await member.fetch(10, 5.0)]
        await member.close()
        return values
    finally:
        await bus.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_scram_login_carries_events(kafka_secure: KafkaAccess, mechanism: str) -> None:
    """With the right SCRAM credentials the bus publishes and consumes on the SASL
    listener, with either mechanism."""
    assert await _round_trip(KafkaBus(_sasl(kafka_secure, mechanism))) == [b"one", b"two"]


async def test_scram_over_tls_carries_events(kafka_secure: KafkaAccess) -> None:
    """SASL_SSL: the broker's certificate is verified against the deployment's (host name
    included) and the SCRAM login goes over TLS."""
    assert await _round_trip(KafkaBus(_tls(kafka_secure))) == [b"one", b"two"]


async def test_a_wrong_password_fails_fast_with_a_clear_error(kafka_secure: KafkaAccess) -> None:
    """A wrong password is not an outage: start fails with KafkaLoginRefused naming the
    authentication failure, long before the connect timeout, without the password."""
    wrong = f"wrong-{uuid.uuid4().hex}"
    bus = KafkaBus(_sasl(kafka_secure, "SCRAM-SHA-256", wrong))
    started = time.monotonic()
    with pytest.raises(KafkaLoginRefused) as caught:
        await bus.start()
    assert time.monotonic() - started < CONNECT_TIMEOUT_S / 2
    assert caught.value.code_name == "_AUTHENTICATION"
    assert "authentication" in str(caught.value).lower()
    assert wrong not in str(caught.value)
    assert caught.value.retriable is False
    await bus.close()


async def test_an_untrusted_certificate_fails_fast(kafka_secure: KafkaAccess) -> None:
    """Without the deployment's certificate among the trusted ones, the TLS handshake
    fails and so does start, with KafkaLoginRefused rather than a timeout."""
    bus = KafkaBus(_tls(kafka_secure, trusted=False))
    started = time.monotonic()
    with pytest.raises(KafkaLoginRefused) as caught:
        await bus.start()
    assert caught.value.code_name == "_SSL"
    assert time.monotonic() - started < CONNECT_TIMEOUT_S / 2
    await bus.close()


async def test_the_composition_root_builds_a_secure_bus_from_settings(
    kafka_secure: KafkaAccess,
) -> None:
    """STOKER_KAFKA_SECURITY_PROTOCOL / _SASL_* / _SSL_* settings reach the bus: a process
    configured for SCRAM over TLS publishes and consumes."""
    assert kafka_secure.tls_bootstrap is not None
    settings = Settings(
        mode=Mode.KAFKA,
        kafka_bootstrap=kafka_secure.tls_bootstrap,
        kafka_partitions=1,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username=kafka_secure.scram_username,
        kafka_sasl_password=kafka_secure.scram_password,  # type: ignore[arg-type]
        kafka_ssl_ca_location=kafka_secure.ca_location,
    )
    bus = build_bus(settings)
    assert isinstance(bus, KafkaBus)
    assert await _round_trip(bus) == [b"one", b"two"]
