"""What the Kafka bus is told: one small validated value, built by the composition root.

The adapter reads no settings of its own; `stoker.app.runtime` builds a `KafkaConfig` from the
process's Settings, and tests and benchmarks build one directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from stoker.core.retry import RetryPolicy

LIBRDKAFKA_LOGGER = "stoker.adapters.bus.kafka.librdkafka"
"""librdkafka's own log lines (connection attempts and the like) go to this stdlib logger."""

OWNED_SETTINGS = frozenset(
    {
        "bootstrap.servers",
        "client.id",
        "logger",
        "group.id",
        "enable.auto.commit",
        "enable.idempotence",
        "acks",
        "partitioner",
        "error_cb",
        # Set from `KafkaSecurity`, so that they are validated and the secrets stay out of
        # reprs and logs.
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.endpoint.identification.algorithm",
    }
)
"""librdkafka settings the adapter sets itself: the delivery rules depend on them."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How the bus proves who it is to the brokers and protects the connection.

    protocol: PLAINTEXT (default), SSL (TLS), SASL_PLAINTEXT (SCRAM login, no TLS) or
        SASL_SSL (SCRAM login over TLS: what a production cluster should use).
    sasl_mechanism / sasl_username / sasl_password: the SCRAM login (SCRAM-SHA-256 or
        SCRAM-SHA-512); all three with a SASL protocol, none without. The password is left
        out of the repr.
    ssl_ca_location: PEM file of the certificate authorities trusted for the brokers'
        certificates (default: the system's).
    ssl_certificate_location / ssl_key_location / ssl_key_password: a client certificate
        for mutual TLS (optional; certificate and key together; the key's password is left
        out of the repr).
    ssl_endpoint_identification: check that a broker's certificate names the host
        connected to (default true; off only for certificates without the right names).
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_endpoint_identification: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in get_args(SecurityProtocol):
            raise ValueError(
                f"protocol must be one of {get_args(SecurityProtocol)}, got {self.protocol!r}"
            )
        login = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password": self.sasl_password,
        }
        if self.uses_sasl:
            missing = [name for name, value in login.items() if not value]
            if missing:
                raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
            if self.sasl_mechanism not in get_args(SaslMechanism):
                raise ValueError(
                    f"sasl_mechanism must be one of {get_args(SaslMechanism)}, "
                    f"got {self.sasl_mechanism!r}"
                )
        elif any(value is not None for value in login.values()):
            raise ValueError(f"SASL settings need a SASL protocol, not {self.protocol}")
        tls = {
            "ssl_ca_location": self.ssl_ca_location,
            "ssl_certificate_location": self.ssl_certificate_location,
            "ssl_key_location": self.ssl_key_location,
            "ssl_key_password": self.ssl_key_password,
        }
        if not self.uses_tls and any(value is not None for value in tls.values()):
            raise ValueError(f"TLS settings need protocol SSL or SASL_SSL, not {self.protocol}")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location come together")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings for this protocol (secrets included: never log them)."""
        settings: dict[str, Any] = {"security.protocol": self.protocol}
        if self.uses_sasl:
            settings["sasl.mechanism"] = self.sasl_mechanism
            settings["sasl.username"] = self.sasl_username
            settings["sasl.password"] = self.sasl_password
        if self.uses_tls:
            settings["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_endpoint_identification else "none"
            )
            optional = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
                "ssl.key.password": self.ssl_key_password,
            }
            settings.update({k: v for k, v in optional.items() if v is not None})
        return settings


def _broker_retry() -> RetryPolicy:
    # Tries are bounded by `connect_timeout_s`, not by a count.
    return RetryPolicy(
        initial_delay_s=0.2, multiplier=2, max_delay_s=5.0, jitter=0, max_attempts=1_000
    )


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How the Kafka bus reaches its brokers and uses them.

    bootstrap: host:port[,host:port] of the brokers (required).
    client_id: librdkafka's `client.id`, as the brokers log it (default "stoker").
    partitions / replication: of the topics `ensure_topics` creates (8 / 1).
    connect_timeout_s: how long starting, a member's first fetch and `ensure_topics` keep
        trying a broker that does not answer (30 s).
    session_timeout_ms / heartbeat_interval_ms: group liveness; a member that died loses
        its partitions after the session timeout (10,000 / 3,000; heartbeats at most a
        third of the session, and the broker's minimum session is 6 s).
    delivery_timeout_ms: how long a record may take to be acknowledged before its publish
        fails (30,000), so a broker outage surfaces as an error instead of a hang.
    linger_ms: how long the producer waits to fill a batch (2).
    fetch_max_wait_ms: longest the broker holds a fetch of an eager member waiting for
        `fetch_min_bytes` (10); a busy topic then comes in batches, a quiet one costs little.
    background_fetch_max_wait_ms: the same for members nothing waits on (100): every fetch
        is a request the broker serves, and at a steady rate those requests, not the
        records, are most of its work.
    fetch_min_bytes: bytes a fetch waits for, up to its max wait (16,384).
    commit_interval_ms: a member writes handled positions to the broker at most this often
        (200; 0 writes every batch), and always on a rebalance, an empty fetch and close.
    close_flush_s: longest `close` waits for records still on their way (30 s).
    broker_retry: the waits between tries of a broker that does not answer (0.2 s,
        doubling up to 5 s), within `connect_timeout_s`.
    security: SASL and TLS (`KafkaSecurity`; default plaintext without a login).
    client_settings: further librdkafka settings for every client (tuning, say); none of
        `OWNED_SETTINGS` (security goes through `security`). Left out of the config's repr.
    """

    bootstrap: str
    client_id: str = "stoker"
    partitions: int = 8
    replication: int = 1
    connect_timeout_s: float = 30.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    delivery_timeout_ms: int = 30_000
    linger_ms: int = 2
    fetch_max_wait_ms: int = 10
    background_fetch_max_wait_ms: int = 100
    fetch_min_bytes: int = 16_384
    commit_interval_ms: int = 200
    close_flush_s: float = 30.0
    broker_retry: RetryPolicy = field(default_factory=_broker_retry)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    client_settings: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for part in self.bootstrap.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"bootstrap must be host:port[,host:port], got {self.bootstrap!r}")
        _at_least(1, partitions=self.partitions, replication=self.replication)
        _at_least(
            1, delivery_timeout_ms=self.delivery_timeout_ms, fetch_min_bytes=self.fetch_min_bytes
        )
        _at_least(
            0,
            linger_ms=self.linger_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            background_fetch_max_wait_ms=self.background_fetch_max_wait_ms,
            commit_interval_ms=self.commit_interval_ms,
            close_flush_s=self.close_flush_s,
        )
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third"
                f" of session_timeout_ms ({self.session_timeout_ms})"
            )
        owned = sorted(OWNED_SETTINGS & set(self.client_settings))
        if owned:
            raise ValueError(f"client_settings may not set {owned}: the bus sets them itself")

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """The settings every librdkafka client of the bus shares, plus `extra`."""
        return {
            **self.client_settings,
            **self.security.librdkafka(),
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
            **extra,
        }


def _at_least(floor: float, **values: float) -> None:
    for name, value in values.items():
        if value < floor:
            raise ValueError(f"{name} must be >= {floor}, got {value}")
