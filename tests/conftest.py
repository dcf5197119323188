"""Shared fixtures. Integration fixtures point at real Kafka and DynamoDB Local.

Where the servers come from, first match wins:
1. the environment: STOKER_KAFKA_BOOTSTRAP / STOKER_DYNAMODB_ENDPOINT (CI exports them
   from `stoker dev infra up --env`; developers point them at servers they keep running);
2. containers through testcontainers, when a Docker engine answers;
3. servers started on free loopback ports by stoker.devinfra (the code behind
   `stoker dev infra up`), stopped when the session ends.
Nothing is ever skipped: when no source works, the tests that need it error.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from stoker.devinfra import (
    DevInfra,
    DynamoDBSpec,
    KafkaAccess,
    KafkaCluster,
    free_ports,
    kafka_spec_on_ports,
    run_sync,
    wait_for_dynamodb,
)

# Kafka 3.9 (Confluent Platform 7.9), the version stoker.devinfra runs from Maven Central.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
DYNAMODB_IMAGE = "amazon/dynamodb-local:2.6.1"
CONTAINER_START_TIMEOUT_S = 120.0


# Every AWS client in the tests talks to a local server (DynamoDB Local, moto, the SageMaker
# simulator): dummy credentials, set for the whole session, never real ones. DynamoDB Local
# 2.x accepts only letters and digits in the access key.
os.environ["AWS_ACCESS_KEY_ID"] = "stokerlocal"
os.environ["AWS_SECRET_ACCESS_KEY"] = "stokerlocal"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)


def _docker_ping(timeout_s: float = 3.0) -> bool:
    """GET /_ping on the engine named by DOCKER_HOST (unix:// or tcp://) or the default socket.

    A plain socket, closed on every path: the docker client library leaves a socket behind
    when the engine is absent, which `filterwarnings = error` turns into a test failure.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rstrip("/").rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except (OSError, ValueError):
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


@pytest.fixture(scope="session")
def docker_engine() -> bool:
    """Whether a Docker engine answers (a docker CLI without a running engine does not count)."""
    return _docker_ping()


@pytest.fixture(scope="session")
def kafka_bootstrap(docker_engine: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker."""
    configured = os.environ.get("STOKER_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    if docker_engine:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    infra = DevInfra(tmp_path_factory.mktemp("kafka-infra"), die_with_caller=True)
    client_port, controller_port = free_ports(2)
    spec = kafka_spec_on_ports([(client_port, controller_port)])
    try:
        run_sync(infra.up(kafka=spec))
        yield spec.bootstrap
    finally:
        run_sync(infra.down())


@pytest.fixture(scope="session")
def kafka_secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaAccess]:
    """A real broker's SASL/SCRAM and SCRAM-over-TLS listeners and their development
    credentials: the ones `stoker dev infra up --env` exported (CI), else a broker started
    here on free loopback ports with those listeners."""
    configured = os.environ.get("STOKER_INFRA_KAFKA_SASL_BOOTSTRAP")
    if configured:
        ca = os.environ["STOKER_INFRA_KAFKA_CA_LOCATION"]
        yield KafkaAccess(
            bootstrap=os.environ.get("STOKER_KAFKA_BOOTSTRAP", ""),
            sasl_bootstrap=configured,
            tls_bootstrap=os.environ["STOKER_INFRA_KAFKA_TLS_BOOTSTRAP"],
            scram_username=os.environ["STOKER_INFRA_KAFKA_SCRAM_USERNAME"],
            scram_password=os.environ["STOKER_INFRA_KAFKA_SCRAM_PASSWORD"],
            ca_location=Path(ca),
        )
        return
    infra = DevInfra(tmp_path_factory.mktemp("kafka-secure"), die_with_caller=True)
    ports = free_ports(4)
    spec = kafka_spec_on_ports([(ports[0], ports[1])], secure_ports=[(ports[2], ports[3])])
    try:
        run_sync(infra.up(kafka=spec))
        access = infra.kafka_access()
        assert access is not None
        yield access
    finally:
        run_sync(infra.down())


@pytest.fixture(scope="session")
def dynamodb_endpoint(
    docker_engine: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Endpoint URL of a real DynamoDB Local."""
    # DynamoDB Local 2.x rejects access key ids that are not purely letters and digits.
    configured = os.environ.get("STOKER_DYNAMODB_ENDPOINT")
    if configured:
        yield configured
        return
    if docker_engine:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(DYNAMODB_IMAGE)
            .with_command("-jar DynamoDBLocal.jar -inMemory -disableTelemetry")
            .with_exposed_ports(8000)
        )
        with container:
            host = container.get_container_host_ip()
            endpoint = f"http://{host}:{container.get_exposed_port(8000)}"
            run_sync(wait_for_dynamodb(endpoint, CONTAINER_START_TIMEOUT_S))
            yield endpoint
        return
    with own_dynamodb_local(tmp_path_factory) as endpoint:
        yield endpoint


@contextmanager
def own_dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DynamoDB Local of its own on a free loopback port (stoker.devinfra), stopped after."""
    infra = DevInfra(tmp_path_factory.mktemp("dynamodb-infra"), die_with_caller=True)
    spec = DynamoDBSpec(port=free_ports(1)[0])
    try:
        run_sync(infra.up(dynamodb=spec))
        yield spec.endpoint
    finally:
        run_sync(infra.down())


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node KRaft cluster (replication 3, min ISR 2) on free loopback ports, for
    failover tests. Always started here: tests kill its processes, which needs them local.
    A test that kills a node heals the cluster before it ends."""
    infra = DevInfra(tmp_path_factory.mktemp("kafka-cluster"), die_with_caller=True)
    ports = free_ports(6)
    spec = kafka_spec_on_ports(list(zip(ports[:3], ports[3:], strict=True)))
    try:
        run_sync(infra.up(kafka=spec))
        yield KafkaCluster(infra, spec)
    finally:
        # The last node of a stopping quorum cannot finish a controlled shutdown; a short
        # grace spares the session waiting for it.
        run_sync(infra.down(grace_s=5.0))


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands under test configure structlog for the process (e.g. `stoker demo` filters
    below ERROR); reset it after each test so log-capturing tests see every line."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The garbage collector's settings as they were before a test that runs a service
    process's entry point in this process (it tunes the collector)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
