"""Process settings from the environment (prefix STOKER_). Bad values stop the process
with a message naming the setting and the expected form."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stoker.core.errors import ConfigurationError


class Mode(StrEnum):
    EMBEDDED = "embedded"
    """SQLite durable log and SQLite store in STOKER_DATA_DIR: one machine, nothing to install."""
    KAFKA = "kafka"
    """Kafka bus and DynamoDB store."""
    DYNAMODB = "dynamodb"
    """DynamoDB store, events carried by the job table's DynamoDB Stream (serverless)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOKER_", extra="ignore", frozen=True)

    mode: Mode = Field(default=Mode.EMBEDDED, description="embedded | kafka | dynamodb")
    data_dir: Path = Field(default=Path(".stoker"), description="embedded mode's files")
    log_level: str = Field(default="INFO", description="DEBUG | INFO | WARNING | ERROR")
    log_json: bool = True
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="allocations between collections of the garbage collector's youngest "
        "generation in a service process (0: Python's default, 700)",
    )

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port]")
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._\-]{0,100}$",
        description="namespace for topics and consumer groups, e.g. 'staging.'",
    )
    kafka_partitions: int = Field(default=8, ge=1, le=1024)
    kafka_replication: int = Field(default=1, ge=1, le=16)
    kafka_fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="longest the broker holds a fetch waiting for kafka_fetch_min_bytes",
    )
    kafka_background_fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="the same for consumers off the launch path (monitor, retrier, notifier): "
        "fewer, fuller fetches",
    )
    kafka_fetch_min_bytes: int = Field(
        default=16_384, ge=1, description="bytes a fetch waits for (up to the max wait)"
    )
    kafka_commit_interval_ms: int = Field(
        default=200,
        ge=0,
        le=60_000,
        description="consumed positions are committed at most this often (0: every batch); "
        "always on a rebalance, on an idle fetch and on close",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="SASL_SSL (SCRAM login over TLS) for a production cluster",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="with a SASL protocol"
    )
    kafka_sasl_username: str | None = Field(default=None, description="with a SASL protocol")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="with a SASL protocol; never shown or logged"
    )
    kafka_ssl_ca_location: Path | None = Field(
        default=None,
        description="PEM file of the CAs trusted for the brokers (default: the system's)",
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None, description="client certificate (PEM) for mutual TLS"
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None, description="client key (PEM) for mutual TLS"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="password of the client key; never shown or logged"
    )
    kafka_ssl_endpoint_identification: bool = Field(
        default=True, description="check that a broker's certificate names its host"
    )

    aws_region: str = "us-east-1"
    aws_retry_mode: Literal["standard", "adaptive"] = Field(
        default="standard",
        description="botocore's retry mode for DynamoDB requests (adaptive adds a "
        "client-side rate limiter); SageMaker requests always use adaptive",
    )
    aws_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="tries per DynamoDB request, the first included, before its error "
        "reaches stoker",
    )
    aws_connect_timeout_s: float = Field(default=3.0, gt=0)
    aws_read_timeout_s: float = Field(default=10.0, gt=0)
    dynamodb_endpoint: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:8000 for DynamoDB Local"
    )
    dynamodb_table_prefix: str = Field(default="stoker", pattern=r"^[A-Za-z0-9_.\-]{1,200}$")
    sagemaker_endpoint: str | None = Field(
        default=None, description="e.g. the SageMaker-API simulator at http://127.0.0.1:8085"
    )

    training_backend: Literal["local", "sagemaker"] | None = Field(
        default=None, description="local processes (embedded default) or the SageMaker API"
    )
    instance_caps: dict[str, int] = Field(
        default_factory=dict,
        description='JSON: concurrent jobs per instance type, e.g. {"ml.p3.2xlarge": 4}',
    )
    default_instance_cap: int | None = Field(default=None, ge=0)
    monitor_poll_interval_s: float | None = Field(
        default=None, gt=0, description="default: 1 s for local processes, 60 s for SageMaker"
    )
    sagemaker_state_changes: bool = Field(
        default=False,
        description="also follow EventBridge state-change events on stoker.sagemaker.state-changes",
    )
    monitor_api_rate_per_s: float = Field(default=2.0, gt=0)
    outbox_gather_ms: int = Field(
        default=20,
        ge=0,
        le=1_000,
        description="how long the events of job transitions (other than a new job's, which "
        "go at once) wait for more before one publish carries them all",
    )
    retry_initial_delay_s: float = Field(default=30.0, ge=0)
    retry_multiplier: float = Field(default=2.0, ge=1)
    retry_max_delay_s: float = Field(default=900.0, ge=0)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    retry_max_attempts: int = Field(default=3, ge=1)
    failure_rules: list[dict[str, str]] = Field(
        default_factory=list,
        description='JSON: extra rules, e.g. [{"reason_pattern": "CUDA out of memory", '
        '"action": "retry"}]',
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        allowed = {"DEBUG", "INFO", "WARNING", "ERROR"}
        if value.upper() not in allowed:
            raise ValueError(f"expected one of {sorted(allowed)}")
        return value.upper()

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        for part in value.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...]")
        return value

    @property
    def backend_kind(self) -> Literal["local", "sagemaker"]:
        if self.training_backend is not None:
            return self.training_backend
        return "local" if self.mode is Mode.EMBEDDED else "sagemaker"

    @property
    def poll_interval_s(self) -> float:
        if self.monitor_poll_interval_s is not None:
            return self.monitor_poll_interval_s
        return 1.0 if self.backend_kind == "local" else 60.0


def load_settings() -> Settings:
    """Settings from the environment, or a ConfigurationError naming each bad one."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = "STOKER_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc
