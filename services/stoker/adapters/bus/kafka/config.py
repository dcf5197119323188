"""What the Kafka bus is told: one small validated value, built by the composition root.

The adapter reads no settings of its own; `stoker.app.runtime` builds a `KafkaConfig` from the
process's Settings, and tests and benchmarks build one directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    }
)
"""librdkafka settings the adapter sets itself: the delivery rules depend on them."""


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
    client_settings: further librdkafka settings for every client (e.g. `security.protocol`,
        `sasl.mechanism`, `sasl.username`, `sasl.password`); none of `OWNED_SETTINGS`. Left
        out of the config's repr, as it may hold a secret.
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
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
            **extra,
        }


def _at_least(floor: float, **values: float) -> None:
    for name, value in values.items():
        if value < floor:
            raise ValueError(f"{name} must be >= {floor}, got {value}")
