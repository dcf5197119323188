"""What to run: validated Kafka and DynamoDB Local specs, port choice, shell exports. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoker.core.errors import ConfigurationError

LOOPBACK = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_DYNAMODB_PORT = 8000
DEFAULT_HEAP_MB = 512
# A single node or a quorum that survives the loss of one (3) or two (5) nodes.
ALLOWED_BROKER_COUNTS = (1, 3, 5)
# Replication of a multi-broker cluster: every partition on three brokers, two must ack.
CLUSTER_REPLICATION = 3
CLUSTER_MIN_INSYNC = 2


def kafka_node_name(node_id: int) -> str:
    """Name of a Kafka node's pid and log files."""
    return f"kafka-{node_id}"


def _check_port(name: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{name} must be a TCP port in 1..65535 (got {port})")


def _check_heap(heap_mb: int) -> None:
    if not 64 <= heap_mb <= 65536:
        raise ConfigurationError(f"heap_mb must be in 64..65536 (got {heap_mb})")


SCRAM_USERNAME = "stoker"
"""The SCRAM user of the secure listeners (its password is drawn for each deployment)."""
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaNodeSpec:
    """One combined broker+controller node of a KRaft cluster."""

    node_id: int
    port: int
    """Client (PLAINTEXT) listener."""
    controller_port: int
    """KRaft controller listener."""
    sasl_port: int | None = None
    """SASL_PLAINTEXT listener (SCRAM), if any."""
    tls_port: int | None = None
    """SASL_SSL listener (SCRAM over TLS, a certificate made for the deployment), if any."""

    def __post_init__(self) -> None:
        if self.node_id < 1:
            raise ConfigurationError(f"node_id must be >= 1 (got {self.node_id})")
        _check_port("port", self.port)
        _check_port("controller_port", self.controller_port)
        if (self.sasl_port is None) != (self.tls_port is None):
            raise ConfigurationError("sasl_port and tls_port come together (or neither)")
        for name, port in (("sasl_port", self.sasl_port), ("tls_port", self.tls_port)):
            if port is not None:
                _check_port(name, port)

    @property
    def ports(self) -> tuple[int, ...]:
        extra = (
            ()
            if self.sasl_port is None or self.tls_port is None
            else (
                self.sasl_port,
                self.tls_port,
            )
        )
        return (self.port, self.controller_port, *extra)

    @property
    def name(self) -> str:
        return kafka_node_name(self.node_id)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@dataclass(frozen=True)
class KafkaSpec:
    """A KRaft cluster on loopback: one node, or a quorum of combined nodes."""

    nodes: tuple[KafkaNodeSpec, ...]
    num_partitions: int = 8
    """Partitions of auto-created topics."""
    heap_mb: int = DEFAULT_HEAP_MB
    """Maximum Java heap of each node."""
    quick_start: bool = True
    """Only the JVM's quick (C1) compiler: on a small shared machine a node answers in about
    half the time; turn off for benchmarks that load the broker for long."""

    def __post_init__(self) -> None:
        if len(self.nodes) not in ALLOWED_BROKER_COUNTS:
            raise ConfigurationError(
                f"brokers must be one of {ALLOWED_BROKER_COUNTS} (got {len(self.nodes)})"
            )
        ids = [n.node_id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"node ids must be unique (got {ids})")
        ports = [p for n in self.nodes for p in n.ports]
        duplicates = sorted({p for p in ports if ports.count(p) > 1})
        if duplicates:
            raise ConfigurationError(f"Kafka ports must all differ (repeated: {duplicates})")
        if len({n.sasl_port is None for n in self.nodes}) > 1:
            raise ConfigurationError("either every node has the secure listeners or none does")
        if not 1 <= self.num_partitions <= 1024:
            raise ConfigurationError(
                f"num_partitions must be in 1..1024 (got {self.num_partitions})"
            )
        _check_heap(self.heap_mb)

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    @property
    def secure(self) -> bool:
        """Whether the nodes have the SASL and TLS listeners (all or none do)."""
        return all(n.sasl_port is not None for n in self.nodes)

    @property
    def sasl_bootstrap(self) -> str | None:
        if not self.secure:
            return None
        return ",".join(f"{LOOPBACK}:{n.sasl_port}" for n in self.nodes)

    @property
    def tls_bootstrap(self) -> str | None:
        if not self.secure:
            return None
        return ",".join(f"{LOOPBACK}:{n.tls_port}" for n in self.nodes)

    @property
    def replication(self) -> int:
        return 1 if self.brokers == 1 else CLUSTER_REPLICATION

    @property
    def min_insync(self) -> int:
        return 1 if self.brokers == 1 else CLUSTER_MIN_INSYNC

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{n.node_id}@{LOOPBACK}:{n.controller_port}" for n in self.nodes)

    def node(self, node_id: int) -> KafkaNodeSpec:
        for candidate in self.nodes:
            if candidate.node_id == node_id:
                return candidate
        raise ConfigurationError(
            f"no Kafka node {node_id} (nodes: {[n.node_id for n in self.nodes]})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "node_id": n.node_id,
                    "port": n.port,
                    "controller_port": n.controller_port,
                    "sasl_port": n.sasl_port,
                    "tls_port": n.tls_port,
                }
                for n in self.nodes
            ],
            "num_partitions": self.num_partitions,
            "heap_mb": self.heap_mb,
            "quick_start": self.quick_start,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KafkaSpec:
        return cls(
            nodes=tuple(KafkaNodeSpec(**node) for node in data["nodes"]),
            num_partitions=int(data["num_partitions"]),
            heap_mb=int(data["heap_mb"]),
            quick_start=bool(data.get("quick_start", True)),
        )


def kafka_spec(
    port: int = DEFAULT_KAFKA_PORT,
    controller_port: int | None = None,
    brokers: int = 1,
    *,
    heap_mb: int = DEFAULT_HEAP_MB,
    quick_start: bool = True,
    secure: bool = False,
    sasl_port: int | None = None,
) -> KafkaSpec:
    """Consecutive ports: node i listens on `port + i` and `controller_port + i`.

    Without a controller port the controllers follow the brokers, so one node gets
    9092/9093 and three nodes get 9092-9094 with controllers on 9095-9097. `secure` adds
    a SASL (SCRAM) listener per node from `sasl_port` (default: after the controllers)
    and a TLS one after those: 9094 and 9095 for one node.
    """
    if brokers not in ALLOWED_BROKER_COUNTS:
        raise ConfigurationError(f"brokers must be one of {ALLOWED_BROKER_COUNTS} (got {brokers})")
    first_controller = port + brokers if controller_port is None else controller_port
    first_sasl = first_controller + brokers if sasl_port is None else sasl_port
    return kafka_spec_on_ports(
        [(port + i, first_controller + i) for i in range(brokers)],
        heap_mb=heap_mb,
        quick_start=quick_start,
        secure_ports=(
            [(first_sasl + i, first_sasl + brokers + i) for i in range(brokers)] if secure else None
        ),
    )


def kafka_spec_on_ports(
    ports: list[tuple[int, int]],
    *,
    heap_mb: int = DEFAULT_HEAP_MB,
    quick_start: bool = True,
    secure_ports: list[tuple[int, int]] | None = None,
) -> KafkaSpec:
    """One node per (client port, controller port) pair, ids from 1; with `secure_ports`,
    node i also gets the i-th (SASL port, TLS port)."""
    if secure_ports is not None and len(secure_ports) != len(ports):
        raise ConfigurationError(
            f"one (sasl, tls) port pair per node: {len(ports)} nodes, {len(secure_ports)} pairs"
        )
    nodes = tuple(
        KafkaNodeSpec(
            node_id=i + 1,
            port=client,
            controller_port=controller,
            sasl_port=secure_ports[i][0] if secure_ports else None,
            tls_port=secure_ports[i][1] if secure_ports else None,
        )
        for i, (client, controller) in enumerate(ports)
    )
    return KafkaSpec(nodes=nodes, heap_mb=heap_mb, quick_start=quick_start)


@dataclass(frozen=True)
class KafkaAccess:
    """How a client reaches a running deployment: its listeners and the credentials of the
    secure ones (development credentials, drawn for the deployment; kept out of repr)."""

    bootstrap: str
    sasl_bootstrap: str | None = None
    tls_bootstrap: str | None = None
    scram_username: str | None = None
    scram_password: str | None = field(default=None, repr=False)
    ca_location: Path | None = None
    """PEM certificate the TLS listener presents (self-signed: it is its own CA)."""


@dataclass(frozen=True)
class DynamoDBSpec:
    """DynamoDB Local, in memory."""

    port: int = DEFAULT_DYNAMODB_PORT
    heap_mb: int = DEFAULT_HEAP_MB
    quick_start: bool = True
    """Only the JVM's quick (C1) compiler, as for Kafka."""

    def __post_init__(self) -> None:
        _check_port("port", self.port)
        _check_heap(self.heap_mb)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "heap_mb": self.heap_mb, "quick_start": self.quick_start}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynamoDBSpec:
        return cls(
            port=int(data["port"]),
            heap_mb=int(data["heap_mb"]),
            quick_start=bool(data.get("quick_start", True)),
        )


def export_lines(kafka: KafkaAccess | None, dynamodb: DynamoDBSpec | None) -> list[str]:
    """`export NAME=value` lines a shell can eval to point stoker at these servers. The
    secure listeners go to STOKER_INFRA_KAFKA_* (tests read them), not to the settings."""
    lines = []
    if kafka is not None:
        lines.append(f"export STOKER_KAFKA_BOOTSTRAP={shlex.quote(kafka.bootstrap)}")
        secure = {
            "SASL_BOOTSTRAP": kafka.sasl_bootstrap,
            "TLS_BOOTSTRAP": kafka.tls_bootstrap,
            "SCRAM_USERNAME": kafka.scram_username,
            "SCRAM_PASSWORD": kafka.scram_password,
            "CA_LOCATION": None if kafka.ca_location is None else str(kafka.ca_location),
        }
        for name, value in secure.items():
            if value is not None:
                lines.append(f"export STOKER_INFRA_KAFKA_{name}={shlex.quote(value)}")
    if dynamodb is not None:
        lines.append(f"export STOKER_DYNAMODB_ENDPOINT={shlex.quote(dynamodb.endpoint)}")
    return lines
