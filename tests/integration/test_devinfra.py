"""`stoker dev infra` against real Kafka and DynamoDB Local processes on spare ports, and a
3-node Kafka cluster surviving the crash of a broker."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from stoker.adapters.bus import KafkaBus
from stoker.cli.dev import app
from stoker.devinfra import DevInfra, KafkaCluster, State, free_ports, run_sync
from stoker.devinfra.procs import is_alive, port_in_use, read_pid_file

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

pytestmark = pytest.mark.integration

CONSUME_DEADLINE_S = 60.0


def _kafka_round_trip(bootstrap: str) -> list[bytes]:
    """Produce three records to a fresh auto-created topic and read them back (blocking)."""
    topic = f"devinfra-{uuid.uuid4().hex[:10]}"
    # Idempotence keeps the order of one key when the first send is retried while the
    # auto-created topic gets its leader; without it m0 can land after m1 and m2.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    _produce_all(producer, topic, [f"m{i}".encode() for i in range(3)], key=b"k")
    return _consume(bootstrap, topic, expected=3)


def _produce_all(
    producer: Producer, topic: str, values: list[bytes], *, key: bytes | None = None
) -> None:
    """Produce in order and return once the broker acknowledged every record (blocking)."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for value in values:
        producer.produce(topic, value, key=key, on_delivery=delivered)
    unacknowledged = producer.flush(CONSUME_DEADLINE_S)
    assert unacknowledged == 0
    assert failures == []


def _consume(bootstrap: str, topic: str, *, expected: int) -> list[bytes]:
    """All values of the topic from the beginning, once `expected` have arrived (blocking)."""
    # librdkafka wants a group id, but assign() reads without joining the group.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"devinfra-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
        }
    )
    try:
        described = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(described.partitions) or [0]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[bytes] = []
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while len(values) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                value = message.value()
                if message.error() is None and isinstance(value, bytes):
                    values.append(value)
        return values
    finally:
        consumer.close()


async def _dynamodb_round_trip(endpoint: str) -> list[str]:
    """Create a table, list it, delete it."""
    table = f"devinfra-{uuid.uuid4().hex[:10]}"
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="stokerlocal",
        aws_secret_access_key="stokerlocal",
    ) as client:
        await client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        listed = (await client.list_tables())["TableNames"]
        await client.delete_table(TableName=table)
    return [name for name in listed if name == table]


def _consecutive_free_ports() -> int:
    """A free port whose successor is free too (the TLS port follows the SASL port)."""
    for _ in range(50):
        (port,) = free_ports(1)
        if port < 65535 and not port_in_use(port + 1):
            return port
    raise AssertionError("no two consecutive free ports on loopback")


def _scram_metadata(bootstrap: str, user: str, password: str) -> int:
    """Brokers listed by a client that logs in with SCRAM-SHA-512 (blocking)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
        }
    )
    return len(producer.list_topics(timeout=30).brokers)


def test_up_status_down_on_spare_ports(tmp_path: Path) -> None:
    """`up --env` starts Kafka and DynamoDB Local that really serve requests, prints their
    addresses (and Kafka's SASL/TLS listeners with their development credentials) for eval,
    is idempotent, `status` reports them answering, and `down` stops the processes, frees
    the ports and deletes Kafka's data while keeping the logs."""
    kafka_port, controller_port, dynamodb_port = free_ports(3)
    sasl_port = _consecutive_free_ports()
    state = tmp_path / "state"
    runner = CliRunner()
    common = ["--state-dir", str(state)]
    ports = [
        "--kafka-port",
        str(kafka_port),
        "--controller-port",
        str(controller_port),
        "--dynamodb-port",
        str(dynamodb_port),
        "--sasl-port",
        str(sasl_port),
    ]
    infra = DevInfra(state)
    try:
        started = runner.invoke(app, ["infra", "up", *ports, "--env", *common])
        assert started.exit_code == 0, started.output
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
        )
        access = infra.kafka_access()
        assert access is not None
        assert access.scram_password is not None
        assert exports == {
            "STOKER_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "STOKER_INFRA_KAFKA_SASL_BOOTSTRAP": f"127.0.0.1:{sasl_port}",
            "STOKER_INFRA_KAFKA_TLS_BOOTSTRAP": f"127.0.0.1:{sasl_port + 1}",
            "STOKER_INFRA_KAFKA_SCRAM_USERNAME": "stoker",
            "STOKER_INFRA_KAFKA_SCRAM_PASSWORD": access.scram_password,
            "STOKER_INFRA_KAFKA_CA_LOCATION": str(infra.layout.kafka_certificate),
            "STOKER_DYNAMODB_ENDPOINT": f"http://127.0.0.1:{dynamodb_port}",
        }
        assert _scram_metadata(f"127.0.0.1:{sasl_port}", "stoker", access.scram_password) == 1
        # The record with the credentials is readable by its owner only.
        assert infra.layout.kafka_record.stat().st_mode & 0o077 == 0

        assert _kafka_round_trip(f"127.0.0.1:{kafka_port}") == [b"m0", b"m1", b"m2"]
        assert len(run_sync(_dynamodb_round_trip(f"http://127.0.0.1:{dynamodb_port}"))) == 1

        pids = {row.name: row.pid for row in run_sync(infra.status())}
        again = runner.invoke(app, ["infra", "up", *ports, *common])
        assert again.exit_code == 0, again.output
        rows = run_sync(infra.status())
        assert {row.name: row.pid for row in rows} == pids
        assert {row.name: row.state for row in rows} == {
            "kafka-1": State.ANSWERING,
            "dynamodb": State.ANSWERING,
        }
        shown = runner.invoke(app, ["infra", "status", *common])
        assert shown.exit_code == 0, shown.output
        assert "kafka-1" in shown.stdout
        assert "dynamodb" in shown.stdout
        refs = [read_pid_file(infra.layout.pid_file(name)) for name in pids]
    finally:
        stopped = runner.invoke(app, ["infra", "down", *common])
    assert stopped.exit_code == 0, stopped.output
    assert all(ref is not None and not is_alive(ref) for ref in refs)
    assert not any(
        port_in_use(p)
        for p in (kafka_port, controller_port, dynamodb_port, sasl_port, sasl_port + 1)
    )
    assert not infra.layout.kafka_root.exists()
    assert infra.layout.log_file("kafka-1").stat().st_size > 0
    assert run_sync(infra.status()) == []


async def test_session_fixtures_point_at_answering_servers(
    kafka_bootstrap: str, dynamodb_endpoint: str
) -> None:
    """Whichever source the fixtures chose (environment, containers or servers started for
    the session), Kafka carries records and DynamoDB Local creates tables."""
    assert await asyncio.to_thread(_kafka_round_trip, kafka_bootstrap) == [b"m0", b"m1", b"m2"]
    assert len(await _dynamodb_round_trip(dynamodb_endpoint)) == 1


def test_up_refuses_a_port_another_process_holds(tmp_path: Path) -> None:
    """A taken port fails at once with an error naming it, and nothing is left running."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = CliRunner().invoke(
            app,
            [
                "infra",
                "up",
                "--no-kafka",
                "--dynamodb-port",
                str(taken),
                "--state-dir",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 1
    assert str(taken) in result.stderr
    assert not (tmp_path / "pids" / "dynamodb.pid").exists()


def test_start_timeout_names_the_log_and_stops_the_server(tmp_path: Path) -> None:
    """A server that does not answer within the deadline fails `up` with an error naming its
    log file, and the half-started process is stopped rather than left behind."""
    port = free_ports(1)[0]
    result = CliRunner().invoke(
        app,
        [
            "infra",
            "up",
            "--no-kafka",
            "--dynamodb-port",
            str(port),
            "--timeout",
            "0.2",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    log_file = tmp_path / "logs" / "dynamodb.log"
    assert f"(log: {log_file})" in result.stderr
    assert not (tmp_path / "pids" / "dynamodb.pid").exists()
    assert not port_in_use(port)


@pytest.mark.slow
async def test_replicated_stream_survives_sigkill_of_the_leader(
    kafka_cluster: KafkaCluster,
) -> None:
    """With replication 3 and min ISR 2, an idempotent acks=all producer keeps writing after
    the partition leader is SIGKILLed, and a consumer reads every record exactly once, in
    order. The killed broker then rejoins."""
    topic = f"failover-{uuid.uuid4().hex[:10]}"
    # stoker's own topic creation. Its CreateTopics once failed on this cluster with "Broker
    # handle destroyed without termination" (the bootstrap connection it went out on was
    # replaced by those to the brokers the metadata named); it now sends it again.
    bus = KafkaBus(kafka_cluster.bootstrap, partitions=1, replication=3)
    await bus.ensure_topics([topic])
    await bus.close()

    producer = Producer(
        {
            "bootstrap.servers": kafka_cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "request.timeout.ms": 30_000,
        }
    )

    def leader() -> int:
        # list_topics sends a fresh metadata request; it does not answer from a cache.
        described = producer.list_topics(topic, timeout=30).topics[topic]
        return int(described.partitions[0].leader)

    killed: int | None = None
    try:
        values = [f"r{i:03d}".encode() for i in range(100)]
        await asyncio.to_thread(_produce_all, producer, topic, values[:50])
        killed = await asyncio.to_thread(leader)
        assert killed in kafka_cluster.node_ids
        await kafka_cluster.kill(killed)

        await asyncio.to_thread(_produce_all, producer, topic, values[50:])
        new_leader = await asyncio.to_thread(leader)
        assert new_leader not in (-1, killed)
    finally:
        if killed is not None:
            await kafka_cluster.heal()

    consumed = await asyncio.to_thread(_consume, kafka_cluster.bootstrap, topic, expected=100)
    assert consumed == values
    rows = await kafka_cluster.infra.status()
    assert [row.state for row in rows] == [State.ANSWERING] * 3
