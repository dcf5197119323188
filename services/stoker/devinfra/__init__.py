"""Real Kafka and DynamoDB Local for development and CI, fetched from Maven Central and run
on loopback without Docker."""

from stoker.devinfra.errors import FetchFailed, InfraStartFailed
from stoker.devinfra.layout import (
    HOME_ENV,
    STATE_ENV,
    StateLayout,
    infra_home,
    infra_state_dir,
)
from stoker.devinfra.manager import (
    DevInfra,
    KafkaCluster,
    ServiceStatus,
    State,
    StopResult,
    run_sync,
)
from stoker.devinfra.probes import wait_for_dynamodb
from stoker.devinfra.procs import free_ports
from stoker.devinfra.spec import (
    DynamoDBSpec,
    KafkaAccess,
    KafkaNodeSpec,
    KafkaSpec,
    export_lines,
    kafka_spec,
    kafka_spec_on_ports,
)

__all__ = [
    "HOME_ENV",
    "STATE_ENV",
    "DevInfra",
    "DynamoDBSpec",
    "FetchFailed",
    "InfraStartFailed",
    "KafkaAccess",
    "KafkaCluster",
    "KafkaNodeSpec",
    "KafkaSpec",
    "ServiceStatus",
    "State",
    "StateLayout",
    "StopResult",
    "export_lines",
    "free_ports",
    "infra_home",
    "infra_state_dir",
    "kafka_spec",
    "kafka_spec_on_ports",
    "run_sync",
    "wait_for_dynamodb",
]
