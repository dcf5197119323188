"""Where things live: the artifact cache and the state folder of one deployment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "STOKER_INFRA_HOME"
STATE_ENV = "STOKER_INFRA_STATE_DIR"


def infra_home(environ: dict[str, str] | None = None) -> Path:
    """The cache of fetched artifacts: $STOKER_INFRA_HOME or ~/.cache/stoker/infra."""
    env = os.environ if environ is None else environ
    configured = env.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "stoker" / "infra"


def infra_state_dir(environ: dict[str, str] | None = None) -> Path:
    """The state folder of the default deployment: $STOKER_INFRA_STATE_DIR or
    <infra home>/state."""
    env = os.environ if environ is None else environ
    configured = env.get(STATE_ENV)
    if configured:
        return Path(configured).expanduser()
    return infra_home(environ) / "state"


@dataclass(frozen=True)
class StateLayout:
    """Files of one running deployment. Separate folders never touch each other's servers."""

    root: Path

    @property
    def pid_dir(self) -> Path:
        return self.root / "pids"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def kafka_root(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_record(self) -> Path:
        return self.root / "kafka.json"

    @property
    def dynamodb_record(self) -> Path:
        return self.root / "dynamodb.json"

    @property
    def dynamodb_dir(self) -> Path:
        """Working folder of DynamoDB Local, which writes a metadata file into it."""
        return self.root / "dynamodb"

    @property
    def kafka_keystore(self) -> Path:
        """The TLS listener's key pair (PKCS12), made for this deployment."""
        return self.kafka_root / "tls" / "broker.p12"

    @property
    def kafka_certificate(self) -> Path:
        """The TLS listener's certificate (PEM): what clients trust."""
        return self.kafka_root / "tls" / "broker.pem"

    @property
    def log4j_file(self) -> Path:
        return self.kafka_root / "log4j.properties"

    def node_dir(self, node_id: int) -> Path:
        return self.kafka_root / f"node-{node_id}"

    def node_data_dir(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "data"

    def node_properties(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    @property
    def warden_pid_file(self) -> Path:
        """The process that stops these servers when their owner is gone (outside `pids/`:
        it is not one of the servers)."""
        return self.root / "warden.pid"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"
