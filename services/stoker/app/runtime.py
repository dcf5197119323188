"""Builds the adapters a process needs from its Settings: the composition root.

The mode picks the transport: embedded (a SQLite log in STOKER_DATA_DIR), kafka, or dynamodb
(events on the job table's DynamoDB Stream). The store follows the mode (SQLite when
embedded, DynamoDB otherwise) unless STOKER_STORE chooses: Kafka with SQLite runs on one
machine without DynamoDB. Nothing above this module names a technology.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import SecretStr

from stoker.app.policy import load_policy, submission_rules
from stoker.bus.prefixed import PrefixedBus
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import ConfigurationError
from stoker.core.failures import FailureClassifier, parse_rules
from stoker.core.policy import Policy
from stoker.core.retry import RetryPolicy
from stoker.lifecycle.capacity import PeerConfig
from stoker.lifecycle.jobs import SubmissionRules
from stoker.lifecycle.launcher import LauncherConfig
from stoker.lifecycle.transitions import Transitioner
from stoker.ports.bus import EventBus
from stoker.ports.capacity import CapacityStore
from stoker.ports.store import JobStore, Store, TokenStore
from stoker.ports.training import TrainingBackend
from stoker.settings import Mode, Settings, StoreKind

if TYPE_CHECKING:
    from stoker.adapters.bus.kafka import KafkaSecurity


def build_bus(settings: Settings) -> EventBus:
    bus = _transport(settings)
    # In DynamoDB Streams mode the table prefix already separates deployments: each has its
    # own table and stream, and the store writes logical topic names into it.
    if settings.topic_prefix and settings.mode is not Mode.DYNAMODB:
        return PrefixedBus(bus, settings.topic_prefix)
    return bus


def _transport(settings: Settings) -> EventBus:
    if settings.mode is Mode.KAFKA:
        from stoker.adapters.bus.kafka import KafkaBus, KafkaConfig

        return KafkaBus(
            KafkaConfig(
                bootstrap=settings.kafka_bootstrap,
                partitions=settings.kafka_partitions,
                replication=settings.kafka_replication,
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                background_fetch_max_wait_ms=settings.kafka_background_fetch_max_wait_ms,
                fetch_min_bytes=settings.kafka_fetch_min_bytes,
                commit_interval_ms=settings.kafka_commit_interval_ms,
                security=kafka_security(settings),
            )
        )
    if settings.mode is Mode.DYNAMODB:
        from stoker.adapters.bus.dynamodb_streams import DynamoDbStreamsBus

        return DynamoDbStreamsBus(settings)
    from stoker.adapters.bus.sqlite_log import SqliteLogBus

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteLogBus(settings.data_dir / "bus.sqlite3", settings=settings)


def kafka_security(settings: Settings) -> KafkaSecurity:
    """The Kafka bus's SASL and TLS settings; ConfigurationError naming the settings when
    they do not fit together."""
    from stoker.adapters.bus.kafka import KafkaSecurity

    def secret(value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()

    def path(value: Path | None) -> str | None:
        return None if value is None else str(value)

    try:
        return KafkaSecurity(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=secret(settings.kafka_sasl_password),
            ssl_ca_location=path(settings.kafka_ssl_ca_location),
            ssl_certificate_location=path(settings.kafka_ssl_certificate_location),
            ssl_key_location=path(settings.kafka_ssl_key_location),
            ssl_key_password=secret(settings.kafka_ssl_key_password),
            ssl_endpoint_identification=settings.kafka_ssl_endpoint_identification,
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"Kafka security settings (STOKER_KAFKA_SECURITY_PROTOCOL, STOKER_KAFKA_SASL_*, "
            f"STOKER_KAFKA_SSL_*): {exc}"
        ) from exc


def build_store(settings: Settings) -> Store:
    """The job store STOKER_STORE names (by default the mode's: SQLite when embedded,
    DynamoDB otherwise), which also keeps the API tokens."""
    if settings.store_kind is StoreKind.SQLITE:
        from stoker.adapters.store.sqlite import SqliteJobStore

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    from stoker.adapters.store.dynamodb import DynamoDbJobStore

    return DynamoDbJobStore(settings)


def build_training_backend(settings: Settings, policy: Policy) -> TrainingBackend:
    """SageMaker, or local processes (the embedded default, or asked for by
    STOKER_TRAINING_BACKEND=local) running only what the policy's `local` rules allow."""
    if settings.backend_kind == "sagemaker":
        from stoker.adapters.training.sagemaker import SageMakerBackend

        return SageMakerBackend(
            region=settings.aws_region, endpoint_url=settings.sagemaker_endpoint
        )
    from stoker.adapters.training.local import LocalProcessBackend

    return LocalProcessBackend(settings.data_dir / "training", rules=policy.local)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        initial_delay_s=settings.retry_initial_delay_s,
        multiplier=settings.retry_multiplier,
        max_delay_s=settings.retry_max_delay_s,
        jitter=settings.retry_jitter,
        max_attempts=settings.retry_max_attempts,
    )


def launcher_config(settings: Settings) -> LauncherConfig:
    """The caps and the lease timings of the launchers, from the settings."""
    return LauncherConfig(
        caps=dict(settings.instance_caps),
        default_cap=settings.default_instance_cap,
        peers=PeerConfig(
            heartbeat_interval_s=settings.launcher_heartbeat_interval_s,
            lease_ttl_s=settings.launcher_lease_ttl_s,
            reconcile_interval_s=settings.slot_reconcile_interval_s,
        ),
    )


def monitor_lease(settings: Settings) -> PeerConfig:
    """The timings of the lease that makes one monitor of a deployment the active one."""
    return PeerConfig(
        heartbeat_interval_s=settings.monitor_heartbeat_interval_s,
        lease_ttl_s=settings.monitor_lease_ttl_s,
    )


def failure_classifier(settings: Settings) -> FailureClassifier:
    return FailureClassifier(parse_rules(settings.failure_rules))


class Runtime:
    """Started adapters for one process; `async with Runtime(settings) as rt: ...`."""

    def __init__(
        self,
        settings: Settings,
        *,
        with_backend: bool = False,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        store: Store | None = None,
        backend: TrainingBackend | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or load_policy(settings)
        """Read at start, so a bad policy file stops the process before it serves."""
        self.clock = clock or SystemClock()
        self.bus = bus or build_bus(settings)
        built = store or build_store(settings)
        self.store: JobStore = built
        self.tokens: TokenStore = built
        """The API tokens: kept by the job store, started and closed with it."""
        self.capacity: CapacityStore = built
        """Slots and leases shared by the launchers and monitors: kept by the job store."""
        self._with_backend = with_backend or backend is not None
        self._backend = backend
        self._stack = AsyncExitStack()
        self._transitioner: Transitioner | None = None
        self._submission_rules: SubmissionRules | None = None

    @property
    def store_delivers_outbox(self) -> bool:
        """In DynamoDB Streams mode the outbox items in the job table are the events."""
        return self.settings.mode is Mode.DYNAMODB

    def transitioner(self) -> Transitioner:
        """The runtime's one Transitioner: its services share one publishing task."""
        if self._transitioner is None:
            self._transitioner = Transitioner(
                self.store,
                self.bus,
                store_delivers_outbox=self.store_delivers_outbox,
                gather_s=self.settings.outbox_gather_ms / 1000,
            )
        return self._transitioner

    def submission_rules(self) -> SubmissionRules:
        """What every submission is checked against (one validator per process)."""
        if self._submission_rules is None:
            self._submission_rules = submission_rules(self.settings, self.policy)
        return self._submission_rules

    async def _flush_transitioner(self) -> None:
        if self._transitioner is not None:
            await self._transitioner.flush()

    @property
    def backend(self) -> TrainingBackend:
        if self._backend is None:
            raise RuntimeError("this runtime was built without a training backend")
        return self._backend

    async def __aenter__(self) -> Runtime:
        await self.store.start()
        self._stack.push_async_callback(self.store.close)
        await self.bus.start()
        self._stack.push_async_callback(self.bus.close)
        # Runs before the bus and the store close: events handed over still go out.
        self._stack.push_async_callback(self._flush_transitioner)
        if self._with_backend:
            if self._backend is None:
                self._backend = build_training_backend(self.settings, self.policy)
            await self._backend.start()
            self._stack.push_async_callback(self._backend.close)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
