"""Configuration files and java command lines for the servers. Pure."""

from __future__ import annotations

import base64
from pathlib import Path

from stoker.devinfra.spec import LOOPBACK, DynamoDBSpec, KafkaNodeSpec, KafkaSpec

KAFKA_MAIN = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"
DYNAMODB_MAIN = "com.amazonaws.services.dynamodbv2.local.main.ServerRunner"
STORAGE_TOOL_HEAP_MB = 256


def cluster_id(raw: bytes) -> str:
    """A KRaft cluster id from 16 random bytes, in Kafka's own form (url-safe base64, no pad).

    Kafka refuses ids that start with '-' (they read as command-line flags) and the
    all-zero id; callers draw fresh bytes when this raises.
    """
    if len(raw) != 16:
        raise ValueError(f"a cluster id needs 16 bytes (got {len(raw)})")
    if raw == bytes(16):
        raise ValueError("the all-zero id is reserved")
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if text.startswith("-"):
        raise ValueError(f"cluster id {text!r} would read as a flag")
    return text


def server_properties(spec: KafkaSpec, node: KafkaNodeSpec, data_dir: Path) -> str:
    """server.properties of one combined broker+controller node."""
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": spec.quorum_voters,
        "listeners": f"PLAINTEXT://{LOOPBACK}:{node.port},CONTROLLER://{LOOPBACK}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "auto.create.topics.enable": "true",
        "num.partitions": spec.num_partitions,
        "default.replication.factor": spec.replication,
        "min.insync.replicas": spec.min_insync,
        "offsets.topic.replication.factor": spec.replication,
        "transaction.state.log.replication.factor": spec.replication,
        "transaction.state.log.min.isr": spec.min_insync,
        # A consumer group on a fresh broker starts at once instead of after 3 s.
        "group.initial.rebalance.delay.ms": 0,
        # Two cores are shared with the tests: few threads per node are plenty.
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
        "unclean.leader.election.enable": "false",
    }
    if spec.brokers > 1:
        # Failover tests: fence a killed broker after 3 s instead of 9 s so leadership
        # moves while the test waits, not minutes later.
        props["broker.heartbeat.interval.ms"] = 500
        props["broker.session.timeout.ms"] = 3000
    lines = [f"{key}={value}" for key, value in props.items()]
    return (
        "# Written by `stoker dev infra up`; regenerated on every start.\n"
        + "\n".join(lines)
        + "\n"
    )


def log4j_properties() -> str:
    """Warnings and errors only, plus the line that says the server started."""
    return (
        "log4j.rootLogger=WARN, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
        # The state-change log is verbose and only useful when debugging Kafka itself.
        "log4j.logger.state.change.logger=WARN\n"
    )


def _jvm_flags(heap_mb: int, quick_start: bool) -> list[str]:
    flags = [
        f"-Xmx{heap_mb}m",
        f"-Xms{min(heap_mb, 128)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        # A JVM that ran out of memory is broken; exiting lets `status` show it.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    ]
    if quick_start:
        # C1 only: the optimising compiler's warm-up costs more CPU than a test run saves.
        flags.append("-XX:TieredStopAtLevel=1")
    return flags


def classpath(lib_dir: Path, jars: list[str]) -> str:
    return ":".join(str(lib_dir / jar) for jar in jars)


def kafka_command(
    java: str, spec: KafkaSpec, cp: str, log4j_file: Path, properties_file: Path
) -> list[str]:
    return [
        java,
        *_jvm_flags(spec.heap_mb, spec.quick_start),
        f"-Dlog4j.configuration={log4j_file.as_uri()}",
        "-cp",
        cp,
        KAFKA_MAIN,
        str(properties_file),
    ]


def storage_format_command(
    java: str, cp: str, log4j_file: Path, properties_file: Path, cluster: str
) -> list[str]:
    """Format a node's log dir for KRaft; a node already formatted with this id is left alone."""
    return [
        java,
        f"-Xmx{STORAGE_TOOL_HEAP_MB}m",
        # A one-second tool: skipping the optimising compiler halves its start-up.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-Dlog4j.configuration={log4j_file.as_uri()}",
        "-cp",
        cp,
        KAFKA_STORAGE_TOOL,
        "format",
        "--cluster-id",
        cluster,
        "--config",
        str(properties_file),
        "--ignore-formatted",
    ]


def dynamodb_command(java: str, spec: DynamoDBSpec, cp: str, native_dir: Path) -> list[str]:
    return [
        java,
        *_jvm_flags(spec.heap_mb, spec.quick_start),
        # sqlite4java loads libsqlite4java-linux-amd64.so from here.
        f"-Djava.library.path={native_dir}",
        "-cp",
        cp,
        DYNAMODB_MAIN,
        "-inMemory",
        "-port",
        str(spec.port),
        # Development machines may only reach package registries; nothing to report to.
        "-disableTelemetry",
    ]
