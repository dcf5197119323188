"""`up`, `down` and `status` of the development servers kept in one state folder."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from stoker.core.errors import ConfigurationError, InfrastructureUnavailable
from stoker.devinfra import artifacts, maven, procs, render, warden
from stoker.devinfra.errors import InfraStartFailed
from stoker.devinfra.layout import StateLayout, infra_home
from stoker.devinfra.probes import (
    dynamodb_list_tables,
    kafka_broker_ids,
    kafka_node_answers,
    probe_timeout_s,
    tcp_open,
    until_answering,
)
from stoker.devinfra.spec import (
    LOOPBACK,
    SCRAM_USERNAME,
    DynamoDBSpec,
    KafkaAccess,
    KafkaNodeSpec,
    KafkaSpec,
    kafka_node_name,
)

DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_GRACE_S = 10.0
STORAGE_FORMAT_TIMEOUT_S = 120.0
DYNAMODB_NAME = "dynamodb"

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run from synchronous code (the CLI, session fixtures) on a private event loop that is
    never installed as the thread's current loop, so a test framework's loop is untouched."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


class State(StrEnum):
    ANSWERING = "answering"
    """Process alive and the server answered a real request."""
    RUNNING = "running"
    """Process alive but the server did not answer (starting, or stuck)."""
    DEAD = "dead"
    """A pid file exists but its process is gone (crashed or killed)."""
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    state: State
    pid: int | None
    log_file: Path


@dataclass(frozen=True)
class StopResult:
    name: str
    pid: int
    graceful: bool


def new_cluster_id() -> str:
    while True:
        try:
            return render.cluster_id(os.urandom(16))
        except ValueError:
            continue


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Owner only: a Kafka record holds the deployment's development credentials.
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def _check_ports_free(ports: list[int], hint: str) -> None:
    taken = [p for p in ports if procs.port_in_use(p)]
    if taken:
        raise ConfigurationError(
            f"port(s) {taken} on {LOOPBACK} are taken by another process; {hint}"
        )


def _run_tool(
    command: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


async def _kafka_answers(spec: KafkaSpec, timeout_s: float) -> None:
    """Every node listens and the cluster reports all its brokers; else a retriable error
    saying what is missing."""
    ports = [p for n in spec.nodes for p in (n.port, n.sasl_port, n.tls_port) if p is not None]
    listening = [await tcp_open(LOOPBACK, p) for p in ports]
    if not all(listening):
        closed = [f"{LOOPBACK}:{p}" for p, ok in zip(ports, listening, strict=True) if not ok]
        raise InfrastructureUnavailable(f"not listening on {closed}")
    ids = await kafka_broker_ids(spec.bootstrap, timeout_s=timeout_s)
    if len(ids) != spec.brokers:
        raise InfrastructureUnavailable(f"{len(ids)} of {spec.brokers} brokers registered ({ids})")


class DevInfra:
    """Kafka and DynamoDB Local processes belonging to one state folder.

    Everything it starts is recorded there (pid files with start times, logs, Kafka data),
    so `down` from another process stops exactly these servers and nothing else.
    """

    def __init__(
        self, state_dir: Path, *, home: Path | None = None, die_with_caller: bool = False
    ) -> None:
        """`die_with_caller`: the servers are stopped when the calling process dies, so a
        killed test session leaves nothing behind (a warden process watches the caller, see
        `stoker.devinfra.warden`). The CLI leaves it off: its servers outlive it."""
        self.layout = StateLayout(state_dir.expanduser().absolute())
        self.home = (home or infra_home()).expanduser().absolute()
        self.die_with_caller = die_with_caller

    # ----------------------------------------------------------------- records

    def kafka_spec(self) -> KafkaSpec | None:
        record = _read_json(self.layout.kafka_record)
        return None if record is None else KafkaSpec.from_dict(record["spec"])

    def kafka_access(self) -> KafkaAccess | None:
        """Listeners and development credentials of the recorded Kafka deployment."""
        record = _read_json(self.layout.kafka_record)
        if record is None:
            return None
        spec = KafkaSpec.from_dict(record["spec"])
        if not spec.secure:
            return KafkaAccess(bootstrap=spec.bootstrap)
        return KafkaAccess(
            bootstrap=spec.bootstrap,
            sasl_bootstrap=spec.sasl_bootstrap,
            tls_bootstrap=spec.tls_bootstrap,
            scram_username=SCRAM_USERNAME,
            scram_password=str(record["scram_password"]),
            ca_location=self.layout.kafka_certificate,
        )

    def dynamodb_spec(self) -> DynamoDBSpec | None:
        record = _read_json(self.layout.dynamodb_record)
        return None if record is None else DynamoDBSpec.from_dict(record["spec"])

    def _process(self, name: str) -> procs.ProcessRef | None:
        ref = procs.read_pid_file(self.layout.pid_file(name))
        return ref if ref is not None and procs.is_alive(ref) else None

    def kafka_process(self, node_id: int) -> procs.ProcessRef | None:
        """The live process of a Kafka node, if it runs."""
        return self._process(kafka_node_name(node_id))

    # ---------------------------------------------------------------------- up

    async def up(
        self,
        *,
        kafka: KafkaSpec | None = None,
        dynamodb: DynamoDBSpec | None = None,
        timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        """Start what is asked and wait until it answers; already answering is fine."""
        jobs: list[Coroutine[Any, Any, None]] = []
        if kafka is not None:
            jobs.append(self.up_kafka(kafka, timeout_s=timeout_s))
        if dynamodb is not None:
            jobs.append(self.up_dynamodb(dynamodb, timeout_s=timeout_s))
        # Both run to completion even if one fails, so nothing is left half-started.
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def up_kafka(
        self, spec: KafkaSpec, *, timeout_s: float = DEFAULT_START_TIMEOUT_S
    ) -> None:
        layout = self.layout
        record = _read_json(layout.kafka_record)
        recorded = None if record is None else KafkaSpec.from_dict(record["spec"])
        alive = {
            node.node_id: ref
            for node in (recorded.nodes if recorded else ())
            if (ref := self._process(node.name)) is not None
        }
        if alive and record is not None and recorded is not None:
            if recorded != spec:
                raise ConfigurationError(
                    f"Kafka from {layout.root} already runs at {recorded.bootstrap} "
                    f"({recorded.brokers} broker(s)); run `stoker dev infra down` first"
                )
        else:
            # Nothing of an earlier deployment runs: start from empty data.
            shutil.rmtree(layout.kafka_root, ignore_errors=True)
            record = {"spec": spec.to_dict(), "cluster_id": new_cluster_id()}
            if spec.secure:
                # Development credentials, drawn for this deployment and kept in its record.
                record["scram_password"] = secrets.token_urlsafe(18)
                record["keystore_password"] = secrets.token_urlsafe(18)
            _write_json(layout.kafka_record, record)
        cluster = str(record["cluster_id"])
        missing = [n for n in spec.nodes if n.node_id not in alive]
        if not missing:
            await self._wait_kafka(spec, {}, timeout_s)
            return
        _check_ports_free(
            [p for n in missing for p in n.ports],
            "choose others with --kafka-port / --controller-port / --sasl-port",
        )
        bundle = await maven.fetch(artifacts.KAFKA, self.home)
        java = maven.find_tool("java", "JAVA_HOME")
        jars = maven.jar_dir(bundle)
        cp = render.classpath(jars, artifacts.classpath_jars(os.listdir(jars)))
        layout.kafka_root.mkdir(parents=True, exist_ok=True)
        layout.log4j_file.write_text(render.log4j_properties())
        keystore_password = record.get("keystore_password")
        scram = (SCRAM_USERNAME, str(record["scram_password"])) if spec.secure else None
        for node in missing:
            layout.node_data_dir(node.node_id).mkdir(parents=True, exist_ok=True)
            _write_private(
                layout.node_properties(node.node_id),
                render.server_properties(
                    spec,
                    node,
                    layout.node_data_dir(node.node_id),
                    keystore=layout.kafka_keystore if spec.secure else None,
                    keystore_password=None if keystore_password is None else str(keystore_password),
                ),
            )
        preparing = [self._format(java, cp, cluster, n, scram) for n in missing]
        if spec.secure and not layout.kafka_keystore.exists():
            preparing.append(self._make_keystore(str(keystore_password)))
        # keytool and the storage tool are separate JVMs: they start side by side.
        await asyncio.gather(*preparing)
        self._watch_owner()
        started: dict[int, procs.ProcessRef] = {}
        try:
            for node in missing:
                ref = procs.launch(
                    render.kafka_command(
                        java, spec, cp, layout.log4j_file, layout.node_properties(node.node_id)
                    ),
                    cwd=layout.node_dir(node.node_id),
                    log_file=layout.log_file(node.name),
                )
                procs.write_pid_file(layout.pid_file(node.name), ref)
                started[node.node_id] = ref
            await self._wait_kafka(spec, started, timeout_s)
        except BaseException:
            await self._abandon({spec.node(i).name: ref for i, ref in started.items()})
            raise

    async def _make_keystore(self, password: str) -> None:
        """The TLS listener's key pair and the certificate clients trust (keytool)."""
        keytool = maven.find_tool("keytool", "JAVA_HOME")
        keystore = self.layout.kafka_keystore
        keystore.parent.mkdir(parents=True, exist_ok=True)
        keystore.parent.chmod(0o700)
        env = {render.KEYSTORE_PASSWORD_ENV: password}
        for command in render.keystore_commands(keytool, keystore, self.layout.kafka_certificate):
            try:
                result = await asyncio.to_thread(
                    _run_tool, command, keystore.parent, STORAGE_FORMAT_TIMEOUT_S, env
                )
            except subprocess.TimeoutExpired as exc:
                raise InfraStartFailed("making the Kafka TLS keystore timed out") from exc
            if result.returncode != 0:
                raise InfraStartFailed(
                    f"making the Kafka TLS keystore failed (exit {result.returncode})",
                    log_tail="\n".join((result.stdout + result.stderr).splitlines()[-20:]),
                )

    async def _format(
        self,
        java: str,
        cp: str,
        cluster: str,
        node: KafkaNodeSpec,
        scram: tuple[str, str] | None,
    ) -> None:
        command = render.storage_format_command(
            java,
            cp,
            self.layout.log4j_file,
            self.layout.node_properties(node.node_id),
            cluster,
            scram=scram,
        )
        try:
            result = await asyncio.to_thread(
                _run_tool, command, self.layout.node_dir(node.node_id), STORAGE_FORMAT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise InfraStartFailed(f"formatting Kafka storage of {node.name} timed out") from exc
        if result.returncode != 0:
            raise InfraStartFailed(
                f"formatting Kafka storage of {node.name} failed (exit {result.returncode})",
                log_tail="\n".join((result.stdout + result.stderr).splitlines()[-20:]),
            )

    async def _wait_kafka(
        self, spec: KafkaSpec, started: dict[int, procs.ProcessRef], timeout_s: float
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        first_log = self.layout.log_file(spec.nodes[0].name)
        try:
            async for attempt in until_answering(timeout_s):
                with attempt:
                    for node_id, ref in started.items():
                        if not procs.is_alive(ref):
                            log = self.layout.log_file(spec.node(node_id).name)
                            raise InfraStartFailed(
                                f"Kafka node {node_id} exited while starting", log, procs.tail(log)
                            )
                    remaining = deadline - asyncio.get_running_loop().time()
                    await _kafka_answers(spec, probe_timeout_s(remaining))
        except InfraStartFailed:
            raise
        except InfrastructureUnavailable as exc:
            raise InfraStartFailed(
                f"Kafka at {spec.bootstrap} did not answer within {timeout_s:.0f} s: {exc}",
                first_log,
                procs.tail(first_log),
            ) from exc

    async def up_dynamodb(
        self, spec: DynamoDBSpec, *, timeout_s: float = DEFAULT_START_TIMEOUT_S
    ) -> None:
        layout = self.layout
        recorded = self.dynamodb_spec()
        running = self._process(DYNAMODB_NAME)
        if running is not None:
            if recorded != spec:
                where = recorded.endpoint if recorded else "an unknown port"
                raise ConfigurationError(
                    f"DynamoDB Local from {layout.root} already runs at {where}; "
                    "run `stoker dev infra down` first"
                )
            await self._wait_dynamodb(spec, None, timeout_s)
            return
        _check_ports_free([spec.port], "choose another with --dynamodb-port")
        bundle = await maven.fetch(artifacts.DYNAMODB_LOCAL, self.home)
        java = maven.find_tool("java", "JAVA_HOME")
        jars = maven.jar_dir(bundle)
        cp = render.classpath(jars, artifacts.classpath_jars(os.listdir(jars)))
        _write_json(layout.dynamodb_record, {"spec": spec.to_dict()})
        self._watch_owner()
        ref = procs.launch(
            render.dynamodb_command(java, spec, cp, maven.native_dir(bundle)),
            cwd=layout.dynamodb_dir,
            log_file=layout.log_file(DYNAMODB_NAME),
        )
        procs.write_pid_file(layout.pid_file(DYNAMODB_NAME), ref)
        try:
            await self._wait_dynamodb(spec, ref, timeout_s)
        except BaseException:
            await self._abandon({DYNAMODB_NAME: ref})
            raise

    async def _wait_dynamodb(
        self, spec: DynamoDBSpec, started: procs.ProcessRef | None, timeout_s: float
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        log = self.layout.log_file(DYNAMODB_NAME)
        try:
            async for attempt in until_answering(timeout_s):
                with attempt:
                    if started is not None and not procs.is_alive(started):
                        raise InfraStartFailed(
                            "DynamoDB Local exited while starting", log, procs.tail(log)
                        )
                    if not await tcp_open(LOOPBACK, spec.port):
                        raise InfrastructureUnavailable(f"not listening on {LOOPBACK}:{spec.port}")
                    remaining = deadline - asyncio.get_running_loop().time()
                    await dynamodb_list_tables(spec.endpoint, timeout_s=probe_timeout_s(remaining))
        except InfraStartFailed:
            raise
        except InfrastructureUnavailable as exc:
            raise InfraStartFailed(
                f"DynamoDB Local at {spec.endpoint} did not answer within {timeout_s:.0f} s: {exc}",
                log,
                procs.tail(log),
            ) from exc

    def _watch_owner(self) -> None:
        """With `die_with_caller`, make sure a warden stops this folder's servers once this
        process is gone. It starts before the servers, so no moment leaves them unwatched."""
        if self.die_with_caller:
            warden.ensure(self.layout)

    async def _abandon(self, refs: dict[str, procs.ProcessRef]) -> None:
        """Stop processes of a start that failed, so a failed `up` leaves nothing running."""
        await asyncio.gather(*(procs.stop(ref, grace_s=5.0) for ref in refs.values()))
        for name in refs:
            self.layout.pid_file(name).unlink(missing_ok=True)

    # -------------------------------------------------------------------- down

    async def down(self, *, grace_s: float = DEFAULT_STOP_GRACE_S) -> list[StopResult]:
        """Stop every server of this state folder (SIGTERM, then SIGKILL after `grace_s`)
        and delete Kafka's data. Logs stay for post-mortems."""
        layout = self.layout
        # The warden first: the owner is stopping the servers itself.
        watching = procs.read_pid_file(layout.warden_pid_file)
        if watching is not None:
            await procs.stop(watching, grace_s)
            layout.warden_pid_file.unlink(missing_ok=True)
        refs: dict[str, procs.ProcessRef] = {}
        pid_files = sorted(layout.pid_dir.glob("*.pid")) if layout.pid_dir.is_dir() else []
        for pid_file in pid_files:
            ref = procs.read_pid_file(pid_file)
            if ref is not None and procs.is_alive(ref):
                refs[pid_file.stem] = ref
        # All at once: stopping Kafka nodes one by one would leave the last ones without a
        # controller quorum, and each would wait out its shutdown timeout.
        graceful = await asyncio.gather(*(procs.stop(ref, grace_s) for ref in refs.values()))
        for pid_file in pid_files:
            pid_file.unlink(missing_ok=True)
        shutil.rmtree(layout.kafka_root, ignore_errors=True)
        layout.kafka_record.unlink(missing_ok=True)
        layout.dynamodb_record.unlink(missing_ok=True)
        return [
            StopResult(name=name, pid=ref.pid, graceful=ok)
            for (name, ref), ok in zip(refs.items(), graceful, strict=True)
        ]

    async def kill_kafka_node(self, node_id: int) -> None:
        """SIGKILL one Kafka node, as a crash would. `up_kafka` with the same spec restarts it."""
        ref = self.kafka_process(node_id)
        if ref is None:
            raise ConfigurationError(f"Kafka node {node_id} of {self.layout.root} is not running")
        await procs.kill(ref)

    # ------------------------------------------------------------------ status

    async def status(self, *, probe_timeout_s: float = 3.0) -> list[ServiceStatus]:
        rows: list[ServiceStatus] = []
        kafka = self.kafka_spec()
        if kafka is not None:
            refs = {
                n.node_id: procs.read_pid_file(self.layout.pid_file(n.name)) for n in kafka.nodes
            }
            live = [n for n in kafka.nodes if (r := refs[n.node_id]) and procs.is_alive(r)]
            # Node by node: a crashed node stays in the cluster metadata until it is fenced,
            # and a cluster-wide request could land on it.
            answers = await asyncio.gather(
                *(kafka_node_answers(n.address, probe_timeout_s) for n in live)
            )
            answering = {n.node_id for n, ok in zip(live, answers, strict=True) if ok}
            for node in kafka.nodes:
                ref = refs[node.node_id]
                rows.append(
                    ServiceStatus(
                        name=node.name,
                        address=node.address,
                        state=_state(ref, node.node_id in answering),
                        pid=ref.pid if ref else None,
                        log_file=self.layout.log_file(node.name),
                    )
                )
        dynamodb = self.dynamodb_spec()
        if dynamodb is not None:
            ref = procs.read_pid_file(self.layout.pid_file(DYNAMODB_NAME))
            ok = False
            if ref is not None and procs.is_alive(ref):
                try:
                    await dynamodb_list_tables(dynamodb.endpoint, probe_timeout_s)
                    ok = True
                except InfrastructureUnavailable:
                    ok = False
            rows.append(
                ServiceStatus(
                    name=DYNAMODB_NAME,
                    address=dynamodb.endpoint,
                    state=_state(ref, ok),
                    pid=ref.pid if ref else None,
                    log_file=self.layout.log_file(DYNAMODB_NAME),
                )
            )
        return rows


def _state(ref: procs.ProcessRef | None, answering: bool) -> State:
    if ref is None:
        return State.STOPPED
    if not procs.is_alive(ref):
        return State.DEAD
    return State.ANSWERING if answering else State.RUNNING


@dataclass(frozen=True)
class KafkaCluster:
    """A running multi-broker cluster, for failover tests: crash a node, then heal it."""

    infra: DevInfra
    spec: KafkaSpec

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    @property
    def node_ids(self) -> list[int]:
        return [n.node_id for n in self.spec.nodes]

    async def kill(self, node_id: int) -> None:
        await self.infra.kill_kafka_node(node_id)

    async def heal(self, *, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> None:
        """Restart killed nodes (their data is kept) and wait until all brokers answer."""
        await self.infra.up_kafka(self.spec, timeout_s=timeout_s)
