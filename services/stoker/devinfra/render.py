"""Configuration files and java command lines for the servers. Pure."""

from __future__ import annotations

import base64
from pathlib import Path

from stoker.devinfra.spec import (
    LOOPBACK,
    SCRAM_MECHANISMS,
    DynamoDBSpec,
    KafkaNodeSpec,
    KafkaSpec,
)

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


SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def server_properties(
    spec: KafkaSpec,
    node: KafkaNodeSpec,
    data_dir: Path,
    *,
    keystore: Path | None = None,
    keystore_password: str | None = None,
) -> str:
    """server.properties of one combined broker+controller node. A node with secure ports
    also listens with SASL_PLAINTEXT (listener SASL) and SASL_SSL (listener TLS), both
    SCRAM-SHA-256/512, the TLS one presenting `keystore`; the plaintext listener stays."""
    listeners = [f"PLAINTEXT://{LOOPBACK}:{node.port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if node.sasl_port is not None and node.tls_port is not None:
        listeners += [f"SASL://{LOOPBACK}:{node.sasl_port}", f"TLS://{LOOPBACK}:{node.tls_port}"]
        protocols += ["SASL:SASL_PLAINTEXT", "TLS:SASL_SSL"]
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": spec.quorum_voters,
        "listeners": ",".join([*listeners, f"CONTROLLER://{LOOPBACK}:{node.controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
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
    if node.sasl_port is not None:
        if keystore is None or keystore_password is None:
            raise ValueError("a node with secure listeners needs a keystore and its password")
        props["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
        for listener in ("sasl", "tls"):
            for mechanism in SCRAM_MECHANISMS:
                props[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
                    SCRAM_LOGIN
                )
        props["listener.name.tls.ssl.keystore.type"] = "PKCS12"
        props["listener.name.tls.ssl.keystore.location"] = str(keystore)
        props["listener.name.tls.ssl.keystore.password"] = keystore_password
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
    java: str,
    cp: str,
    log4j_file: Path,
    properties_file: Path,
    cluster: str,
    *,
    scram: tuple[str, str] | None = None,
) -> list[str]:
    """Format a node's log dir for KRaft; a node already formatted with this id is left alone.
    `scram` (user, password) is written into the new metadata as a SCRAM credential of
    every mechanism, so the secure listeners accept it from the first start."""
    credentials: list[str] = []
    if scram is not None:
        user, password = scram
        for mechanism in SCRAM_MECHANISMS:
            credentials += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
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
        *credentials,
    ]


KEYSTORE_PASSWORD_ENV = "STOKER_INFRA_KEYSTORE_PASSWORD"
"""keytool reads the keystore password from this variable, never from its command line."""


def keystore_commands(keytool: str, keystore: Path, certificate: Path) -> list[list[str]]:
    """keytool calls that make the TLS listener's key pair (a self-signed certificate for
    127.0.0.1 and localhost, so clients verify the host name) and export the certificate as
    PEM for clients to trust. The password comes from `KEYSTORE_PASSWORD_ENV`."""
    common = ["-alias", "broker", "-keystore", str(keystore), "-storetype", "PKCS12"]
    password = ["-storepass:env", KEYSTORE_PASSWORD_ENV]
    return [
        [
            keytool,
            "-genkeypair",
            *common,
            *password,
            "-keypass:env",
            KEYSTORE_PASSWORD_ENV,
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-validity",
            "3650",
            "-dname",
            "CN=localhost",
            "-ext",
            f"SAN=IP:{LOOPBACK},DNS:localhost",
            "-noprompt",
        ],
        [keytool, "-exportcert", *common, *password, "-rfc", "-file", str(certificate)],
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
