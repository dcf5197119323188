"""`stoker dev`: developer tools (real infrastructure on loopback)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stoker.core.errors import ConfigurationError, StokerError
from stoker.devinfra import (
    STATE_ENV,
    DevInfra,
    DynamoDBSpec,
    State,
    export_lines,
    infra_home,
    infra_state_dir,
    kafka_spec,
    run_sync,
)
from stoker.devinfra.manager import DEFAULT_START_TIMEOUT_S, DEFAULT_STOP_GRACE_S
from stoker.devinfra.probes import LIBRDKAFKA_LOGGER
from stoker.devinfra.spec import DEFAULT_DYNAMODB_PORT, DEFAULT_HEAP_MB, DEFAULT_KAFKA_PORT

app = typer.Typer(
    help="Developer tools: start real Kafka and DynamoDB Local.", no_args_is_help=True
)
infra_app = typer.Typer(
    help=(
        "Real Kafka and DynamoDB Local on loopback, fetched from Maven Central with Maven "
        "(cache: $STOKER_INFRA_HOME, default ~/.cache/stoker/infra). No Docker needed."
    ),
    no_args_is_help=True,
)
app.add_typer(infra_app, name="infra")

# Soft wrap: messages naming paths stay on one line for scripts that grep them.
_err = Console(stderr=True, soft_wrap=True)
_out = Console()

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=STATE_ENV,
        help="Pid files, logs and Kafka data of this deployment (default: <cache>/state).",
        show_default=False,
    ),
]

_STATE_STYLE = {
    State.ANSWERING: "green",
    State.RUNNING: "yellow",
    State.DEAD: "red",
    State.STOPPED: "dim",
}


def _infra(state_dir: Path | None) -> DevInfra:
    return DevInfra(state_dir if state_dir is not None else infra_state_dir(), home=infra_home())


def _quiet_clients() -> None:
    # While a broker starts, refused connections are expected; the probes report them.
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)


def _fail(exc: StokerError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(code=1)


@infra_app.command("up")
def up(
    *,
    kafka: Annotated[
        bool, typer.Option("--kafka/--no-kafka", help="Start Apache Kafka (KRaft).")
    ] = True,
    dynamodb: Annotated[
        bool, typer.Option("--dynamodb/--no-dynamodb", help="Start DynamoDB Local (in memory).")
    ] = True,
    kafka_port: Annotated[
        int,
        typer.Option(
            envvar="STOKER_INFRA_KAFKA_PORT", help="Client port of the first Kafka broker."
        ),
    ] = DEFAULT_KAFKA_PORT,
    controller_port: Annotated[
        int | None,
        typer.Option(
            envvar="STOKER_INFRA_CONTROLLER_PORT",
            help="KRaft controller port of the first node (default: right after the broker ports).",
            show_default=False,
        ),
    ] = None,
    brokers: Annotated[
        int,
        typer.Option(help="Kafka nodes: 1, or 3 for failover tests (replication 3, min ISR 2)."),
    ] = 1,
    secure_listeners: Annotated[
        bool,
        typer.Option(
            help=(
                "Also listen with SASL/SCRAM (SASL_PLAINTEXT) and SASL/SCRAM over TLS "
                "(SASL_SSL, a certificate made for the deployment), with a SCRAM user whose "
                "password is drawn at start; --env prints them. The plaintext listener stays."
            )
        ),
    ] = True,
    sasl_port: Annotated[
        int | None,
        typer.Option(
            envvar="STOKER_INFRA_SASL_PORT",
            help="SASL port of the first node; the TLS ports follow the SASL ones "
            "(default: right after the controller ports).",
            show_default=False,
        ),
    ] = None,
    dynamodb_port: Annotated[
        int, typer.Option(envvar="STOKER_INFRA_DYNAMODB_PORT", help="DynamoDB Local port.")
    ] = DEFAULT_DYNAMODB_PORT,
    heap_mb: Annotated[int, typer.Option(help="Java heap limit of each server, MiB.")] = (
        DEFAULT_HEAP_MB
    ),
    quick_start: Annotated[
        bool,
        typer.Option(
            help=(
                "JVM quick (C1) compiler only: servers answer about twice as fast on a small "
                "machine. Use --no-quick-start for long benchmarks."
            )
        ),
    ] = True,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait until the servers answer.")
    ] = DEFAULT_START_TIMEOUT_S,
    env: Annotated[
        bool,
        typer.Option(
            "--env", help="Print `export STOKER_...=` lines on stdout for `eval` in a shell."
        ),
    ] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Fetch (first time only), start and wait until the servers answer. Idempotent."""
    _quiet_clients()
    try:
        kafka_wanted = kafka_spec(
            kafka_port,
            controller_port,
            brokers,
            heap_mb=heap_mb,
            quick_start=quick_start,
            secure=secure_listeners,
            sasl_port=sasl_port,
        )
        dynamodb_wanted = DynamoDBSpec(port=dynamodb_port, heap_mb=heap_mb, quick_start=quick_start)
        infra = _infra(state_dir)
        run_sync(
            infra.up(
                kafka=kafka_wanted if kafka else None,
                dynamodb=dynamodb_wanted if dynamodb else None,
                timeout_s=timeout,
            )
        )
    except StokerError as exc:
        raise _fail(exc) from exc
    access = infra.kafka_access() if kafka else None
    if kafka:
        _err.print(f"Kafka answering at {kafka_wanted.bootstrap}", highlight=False)
        if kafka_wanted.secure:
            _err.print(
                f"Kafka SASL/SCRAM at {kafka_wanted.sasl_bootstrap}, over TLS at "
                f"{kafka_wanted.tls_bootstrap} (credentials: --env)",
                highlight=False,
            )
    if dynamodb:
        _err.print(f"DynamoDB Local answering at {dynamodb_wanted.endpoint}", highlight=False)
    _err.print(f"state: {infra.layout.root}", highlight=False)
    if env:
        for line in export_lines(access, dynamodb_wanted if dynamodb else None):
            print(line)


@infra_app.command("down")
def down(
    *,
    grace: Annotated[
        float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")
    ] = DEFAULT_STOP_GRACE_S,
    state_dir: StateDirOption = None,
) -> None:
    """Stop the servers of the state folder and delete Kafka's data (logs are kept)."""
    try:
        results = run_sync(_infra(state_dir).down(grace_s=grace))
    except StokerError as exc:
        raise _fail(exc) from exc
    if not results:
        _err.print("nothing was running")
    for result in results:
        how = "stopped" if result.graceful else f"killed after {grace:.0f} s"
        _err.print(f"{how} {result.name} (pid {result.pid})", highlight=False)


@infra_app.command("status")
def status(*, state_dir: StateDirOption = None) -> None:
    """Show each server: address, whether it answers, pid and log file."""
    _quiet_clients()
    infra = _infra(state_dir)
    try:
        rows = run_sync(infra.status())
    except StokerError as exc:
        raise _fail(exc) from exc
    if not rows:
        _out.print(f"nothing started from {infra.layout.root}", highlight=False)
        return
    table = Table(title=f"stoker dev infra — {infra.layout.root}")
    for column in ("service", "address", "state", "pid", "log"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = _STATE_STYLE[row.state]
        table.add_row(
            row.name,
            row.address,
            f"[{style}]{row.state.value}[/{style}]",
            "-" if row.pid is None else str(row.pid),
            str(row.log_file),
        )
    _out.print(table)


@app.command("s3")
def s3(
    *,
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the port (0: a free one)")] = 9000,
) -> None:
    """An S3-compatible server on this machine (moto's, from the dev extra) for the sagemaker
    SDK's uploads; prints the exports that point the SDK at it. Ctrl-C stops it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise _fail(ConfigurationError("stoker dev s3 needs the dev extra (moto[server])")) from exc
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    url = f"http://{bound_host}:{bound_port}"
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
        typer.echo(f"export {name}={url}")
    typer.echo("# S3 and STS on this machine (in memory: gone when stopped); Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
