"""Pure parts of the development infrastructure: specs, ports, rendered files, commands."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from stoker import devinfra
from stoker.core.errors import ConfigurationError
from stoker.devinfra import artifacts, render
from stoker.devinfra.layout import StateLayout, infra_home, infra_state_dir
from stoker.devinfra.procs import ProcessRef, is_alive
from stoker.devinfra.spec import DynamoDBSpec, KafkaAccess, KafkaSpec, export_lines, kafka_spec

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _props(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {line.partition("=")[0]: line.partition("=")[2] for line in lines}


def test_single_node_takes_the_controller_port_after_the_broker_port() -> None:
    """One node: client 9092, controller 9093, bootstrap naming loopback."""
    spec = kafka_spec()
    assert [(n.node_id, n.port, n.controller_port) for n in spec.nodes] == [(1, 9092, 9093)]
    assert spec.bootstrap == "127.0.0.1:9092"
    assert (spec.replication, spec.min_insync) == (1, 1)


def test_three_nodes_get_consecutive_ports_and_a_quorum_of_three() -> None:
    """Three nodes: brokers on consecutive ports, controllers right after, voters list all."""
    spec = kafka_spec(29092, brokers=3)
    assert [(n.port, n.controller_port) for n in spec.nodes] == [
        (29092, 29095),
        (29093, 29096),
        (29094, 29097),
    ]
    assert spec.bootstrap == "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
    assert spec.quorum_voters == "1@127.0.0.1:29095,2@127.0.0.1:29096,3@127.0.0.1:29097"
    assert (spec.replication, spec.min_insync) == (3, 2)


def test_explicit_controller_port_is_honoured() -> None:
    """A given controller port is used as the first controller port."""
    spec = kafka_spec(19092, 19093)
    assert spec.nodes[0].controller_port == 19093


@pytest.mark.parametrize("brokers", [0, 2, 4, 7])
def test_broker_counts_without_a_useful_quorum_are_rejected(brokers: int) -> None:
    """Only 1 or an odd quorum of 3 or 5 nodes is accepted, and the error shows the value."""
    with pytest.raises(ConfigurationError, match=f"got {brokers}"):
        kafka_spec(brokers=brokers)


def test_overlapping_ports_are_rejected() -> None:
    """A controller range that overlaps the broker range fails with the repeated ports."""
    with pytest.raises(ConfigurationError, match=r"repeated: \[9093, 9094\]"):
        kafka_spec(9092, 9093, brokers=3)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_out_of_range_ports_are_rejected(port: int) -> None:
    """Ports outside 1..65535 fail at construction, naming the bad value."""
    with pytest.raises(ConfigurationError, match=str(port)):
        DynamoDBSpec(port=port)


def test_specs_survive_their_record_round_trip() -> None:
    """What `up` writes to the state folder reads back as an equal spec."""
    spec = kafka_spec(19092, brokers=3, heap_mb=256)
    assert KafkaSpec.from_dict(spec.to_dict()) == spec
    dynamodb = DynamoDBSpec(port=18000, heap_mb=300)
    assert DynamoDBSpec.from_dict(dynamodb.to_dict()) == dynamodb


def test_export_lines_are_shell_assignments() -> None:
    """--env prints one eval-able export per service that was asked for; the secure
    listeners and their development credentials go to STOKER_INFRA_KAFKA_* only."""
    plain = KafkaAccess(bootstrap=kafka_spec(19092, brokers=3).bootstrap)
    lines = export_lines(plain, DynamoDBSpec(port=18000))
    assert lines == [
        "export STOKER_KAFKA_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094",
        "export STOKER_DYNAMODB_ENDPOINT=http://127.0.0.1:18000",
    ]
    secure = KafkaAccess(
        bootstrap="127.0.0.1:9092",
        sasl_bootstrap="127.0.0.1:9094",
        tls_bootstrap="127.0.0.1:9095",
        scram_username="stoker",
        scram_password="p w",
        ca_location=Path("/s/broker.pem"),
    )
    assert export_lines(secure, None) == [
        "export STOKER_KAFKA_BOOTSTRAP=127.0.0.1:9092",
        "export STOKER_INFRA_KAFKA_SASL_BOOTSTRAP=127.0.0.1:9094",
        "export STOKER_INFRA_KAFKA_TLS_BOOTSTRAP=127.0.0.1:9095",
        "export STOKER_INFRA_KAFKA_SCRAM_USERNAME=stoker",
        "export STOKER_INFRA_KAFKA_SCRAM_PASSWORD='p w'",
        "export STOKER_INFRA_KAFKA_CA_LOCATION=/s/broker.pem",
    ]
    assert "p w" not in repr(secure)
    assert export_lines(None, DynamoDBSpec()) == [
        "export STOKER_DYNAMODB_ENDPOINT=http://127.0.0.1:8000"
    ]


def test_single_node_properties_match_the_development_defaults() -> None:
    """KRaft combined mode on loopback, auto-created topics with 8 partitions, replication 1,
    no initial rebalance delay."""
    spec = kafka_spec(19092)
    props = _props(render.server_properties(spec, spec.nodes[0], Path("/data/n1")))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == "/data/n1"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "8"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "broker.session.timeout.ms" not in props


def test_secure_listeners_follow_the_controllers_and_keep_plaintext() -> None:
    """`secure` adds a SASL port per node after the controllers and a TLS port after those;
    each node then listens with PLAINTEXT, SASL (SCRAM) and TLS (SCRAM over TLS, the
    deployment's keystore); brokers still talk to each other in plaintext."""
    spec = kafka_spec(29092, brokers=3, secure=True)
    assert [(n.sasl_port, n.tls_port) for n in spec.nodes] == [
        (29098, 29101),
        (29099, 29102),
        (29100, 29103),
    ]
    assert spec.sasl_bootstrap == "127.0.0.1:29098,127.0.0.1:29099,127.0.0.1:29100"
    assert KafkaSpec.from_dict(spec.to_dict()) == spec
    props = _props(
        render.server_properties(
            spec, spec.nodes[0], Path("/d"), keystore=Path("/k.p12"), keystore_password="pw"
        )
    )
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,SASL://127.0.0.1:29098,TLS://127.0.0.1:29101,"
        "CONTROLLER://127.0.0.1:29095"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,SASL://127.0.0.1:29098,TLS://127.0.0.1:29101"
    )
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,TLS:SASL_SSL"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert "ScramLoginModule" in props["listener.name.tls.scram-sha-512.sasl.jaas.config"]
    assert props["listener.name.tls.ssl.keystore.location"] == "/k.p12"
    with pytest.raises(ValueError, match="keystore"):
        render.server_properties(spec, spec.nodes[0], Path("/d"))


def test_secure_ports_must_not_collide() -> None:
    """A SASL port on a controller port is refused like any repeated port."""
    with pytest.raises(ConfigurationError, match="repeated"):
        kafka_spec(19092, 19093, secure=True, sasl_port=19093)


def test_scram_users_are_added_at_format_and_keytool_reads_its_password_from_env() -> None:
    """The storage tool writes the SCRAM user for both mechanisms into the new metadata;
    keytool gets the keystore password through a variable, not its command line."""
    command = render.storage_format_command(
        "java", "/l/a.jar", Path("/l4j"), Path("/p"), "abc", scram=("stoker", "s3cret")
    )
    tail = command[command.index("--ignore-formatted") + 1 :]
    assert tail == [
        "--add-scram",
        "SCRAM-SHA-256=[name=stoker,password=s3cret]",
        "--add-scram",
        "SCRAM-SHA-512=[name=stoker,password=s3cret]",
    ]
    make, export = render.keystore_commands("keytool", Path("/t/k.p12"), Path("/t/c.pem"))
    assert make[make.index("-storepass:env") + 1] == render.KEYSTORE_PASSWORD_ENV
    assert "SAN=IP:127.0.0.1,DNS:localhost" in make
    assert export[-2:] == ["-file", "/t/c.pem"]


def test_cluster_node_properties_replicate_three_ways() -> None:
    """Each node of a 3-node cluster: its own id and listeners, replication 3, min ISR 2,
    fast fencing of a dead broker."""
    spec = kafka_spec(29092, brokers=3)
    props = _props(render.server_properties(spec, spec.nodes[1], Path("/d")))
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29093,CONTROLLER://127.0.0.1:29096"
    assert props["controller.quorum.voters"] == spec.quorum_voters
    assert props["default.replication.factor"] == "3"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"
    assert int(props["broker.session.timeout.ms"]) < 9000


def test_log4j_config_is_quiet() -> None:
    """The root logger writes warnings and errors to stdout only (the node's log file)."""
    text = render.log4j_properties()
    assert "log4j.rootLogger=WARN, stdout" in text
    assert "org.apache.log4j.ConsoleAppender" in text


def test_pom_lists_the_bundle_and_pins_the_dependency_plugin() -> None:
    """The written pom is valid XML with each coordinate and the pinned plugin version."""
    root = ET.fromstring(artifacts.pom_xml(artifacts.KAFKA))
    deps = [
        (d.findtext("m:groupId", namespaces=POM_NS), d.findtext("m:artifactId", namespaces=POM_NS))
        for d in root.iterfind("m:dependencies/m:dependency", POM_NS)
    ]
    assert deps == [("org.apache.kafka", "kafka_2.13"), ("org.slf4j", "slf4j-reload4j")]
    versions = [v.text for v in root.iterfind("m:dependencies/m:dependency/m:version", POM_NS)]
    assert versions == ["3.9.1", "1.7.36"]
    plugin = root.find("m:build/m:pluginManagement/m:plugins/m:plugin", POM_NS)
    assert plugin is not None
    assert plugin.findtext("m:version", namespaces=POM_NS) == artifacts.DEPENDENCY_PLUGIN_VERSION


def test_dynamodb_bundle_is_dynamodb_local_2_6_1() -> None:
    """DynamoDB Local comes from com.amazonaws:DynamoDBLocal 2.6.1."""
    root = ET.fromstring(artifacts.pom_xml(artifacts.DYNAMODB_LOCAL))
    dep = root.find("m:dependencies/m:dependency", POM_NS)
    assert dep is not None
    assert dep.findtext("m:artifactId", namespaces=POM_NS) == "DynamoDBLocal"
    assert dep.findtext("m:version", namespaces=POM_NS) == "2.6.1"


def test_bundle_folder_changes_with_its_versions() -> None:
    """A different version set gets a different cache folder, so upgrades never mix jars."""
    other = artifacts.Bundle(
        "kafka", (artifacts.Coordinate("org.apache.kafka", "kafka_2.13", "3.9.0"),)
    )
    assert other.folder_name != artifacts.KAFKA.folder_name
    assert artifacts.KAFKA.folder_name.startswith("kafka-")


def test_copy_dependencies_runs_in_batch_mode_for_runtime_scope() -> None:
    """mvn is asked for runtime dependencies only, into the given folder, without prompts."""
    args = artifacts.copy_dependencies_args("/w/pom.xml", "/w/out")
    assert args[:2] == ["-B", "-q"]
    assert "dependency:copy-dependencies" in args
    assert "-DoutputDirectory=/w/out" in args
    assert "-DincludeScope=runtime" in args


def test_native_libraries_get_their_unversioned_names() -> None:
    """libsqlite4java-linux-amd64-1.0.392.so is reachable as libsqlite4java-linux-amd64.so."""
    links = artifacts.native_library_links(
        [
            "libsqlite4java-linux-amd64-1.0.392.so",
            "libsqlite4java-osx-1.0.392.dylib",
            "sqlite4java-1.0.392.jar",
            "README.so.txt",
        ]
    )
    assert links == {
        "libsqlite4java-linux-amd64.so": "libsqlite4java-linux-amd64-1.0.392.so",
        "libsqlite4java-osx.dylib": "libsqlite4java-osx-1.0.392.dylib",
    }


def test_classpath_holds_only_jars_in_a_stable_order() -> None:
    """Native files are left out and the order does not depend on directory listing order."""
    jars = artifacts.classpath_jars(["b.jar", "x.so", "a.jar"])
    assert jars == ["a.jar", "b.jar"]
    assert render.classpath(Path("/lib"), jars) == "/lib/a.jar:/lib/b.jar"


def test_kafka_command_runs_the_broker_with_a_small_heap() -> None:
    """java <small heap> -Dlog4j.configuration=file:... -cp ... kafka.Kafka server.properties."""
    spec = kafka_spec(19092)
    command = render.kafka_command(
        "/usr/bin/java", spec, "/l/a.jar", Path("/s/log4j.properties"), Path("/s/p")
    )
    assert command[0] == "/usr/bin/java"
    assert "-Xmx512m" in command
    assert "-Dlog4j.configuration=file:///s/log4j.properties" in command
    assert command[-2:] == ["kafka.Kafka", "/s/p"]


def test_storage_format_is_idempotent_for_one_cluster_id() -> None:
    """The storage tool formats with the given cluster id and leaves formatted dirs alone."""
    command = render.storage_format_command("java", "/l/a.jar", Path("/l4j"), Path("/p"), "abc")
    tail = command[command.index("kafka.tools.StorageTool") :]
    assert tail == [
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        "abc",
        "--config",
        "/p",
        "--ignore-formatted",
    ]


def test_dynamodb_command_runs_in_memory_with_the_native_library_path() -> None:
    """ServerRunner -inMemory -port P, with java.library.path on the native folder."""
    command = render.dynamodb_command("java", DynamoDBSpec(port=18000), "/l/a.jar", Path("/n"))
    assert "-Djava.library.path=/n" in command
    main = command.index("com.amazonaws.services.dynamodbv2.local.main.ServerRunner")
    assert command[main + 1 : main + 4] == ["-inMemory", "-port", "18000"]


def test_cluster_id_uses_kafkas_text_form() -> None:
    """16 bytes become 22 url-safe base64 characters, as Kafka's Uuid prints them."""
    assert render.cluster_id(bytes(range(16))) == "AAECAwQFBgcICQoLDA0ODw"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(bytes(16), "all-zero"), (b"\xfb" + bytes(15), "flag"), (b"short", "16 bytes")],
)
def test_unusable_cluster_ids_are_refused(raw: bytes, reason: str) -> None:
    """The zero id, ids starting with '-' and wrong lengths are refused."""
    with pytest.raises(ValueError, match=reason):
        render.cluster_id(raw)


def test_pid_files_hold_pid_and_start_time() -> None:
    """A pid file round-trips; anything else reads as no process."""
    ref = ProcessRef(pid=12, create_time=1767268800.37)
    assert ProcessRef.from_text(ref.to_text()) == ref
    assert ProcessRef.from_text("garbage") is None
    assert ProcessRef.from_text("12 soon") is None


def test_pid_files_of_earlier_versions_still_name_their_process() -> None:
    """Earlier versions recorded clock ticks since boot; they read as the same start time
    psutil reports, so `down` still recognises servers an earlier version started."""
    me = psutil.Process()
    ticks = round((me.create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK"))
    legacy = ProcessRef.from_text(f"{me.pid} {ticks}\n")
    assert legacy is not None
    assert is_alive(legacy)


def test_infra_home_follows_the_environment() -> None:
    """STOKER_INFRA_HOME overrides the default cache under ~/.cache/stoker/infra."""
    assert infra_home({"STOKER_INFRA_HOME": "/opt/infra"}) == Path("/opt/infra")
    assert infra_home({}) == Path.home() / ".cache" / "stoker" / "infra"


def test_state_layout_keeps_each_node_apart() -> None:
    """Each node has its own data folder, pid file and log file."""
    layout = StateLayout(Path("/s"))
    assert layout.node_data_dir(2) == Path("/s/kafka/node-2/data")
    assert layout.pid_file("kafka-2") == Path("/s/pids/kafka-2.pid")
    assert layout.log_file("dynamodb") == Path("/s/logs/dynamodb.log")


def test_public_surface_is_what_it_claims() -> None:
    """Everything in __all__ exists, and nothing private is exported."""
    for name in devinfra.__all__:
        assert hasattr(devinfra, name), name
        assert not name.startswith("_")


def test_quick_start_limits_the_jit_and_can_be_turned_off() -> None:
    """Quick start (the default) runs the C1 compiler only; benchmarks can ask for full JIT."""
    quick = render.dynamodb_command("java", DynamoDBSpec(), "/a.jar", Path("/n"))
    full = render.dynamodb_command("java", DynamoDBSpec(quick_start=False), "/a.jar", Path("/n"))
    assert "-XX:TieredStopAtLevel=1" in quick
    assert "-XX:TieredStopAtLevel=1" not in full
    spec = kafka_spec(quick_start=False)
    assert KafkaSpec.from_dict(spec.to_dict()).quick_start is False


def test_the_default_state_folder_follows_the_environment() -> None:
    """The CLI and the benchmark find the default deployment's state in the same place."""
    assert infra_state_dir({"STOKER_INFRA_STATE_DIR": "/tmp/ci-infra"}) == Path("/tmp/ci-infra")
    assert infra_state_dir({"STOKER_INFRA_HOME": "/opt/infra"}) == Path("/opt/infra/state")
