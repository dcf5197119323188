"""Process settings from the environment (prefix STOKER_). Bad values stop the process
with a message naming the setting and the expected form."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
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

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port]")
    kafka_partitions: int = Field(default=8, ge=1, le=1024)
    kafka_replication: int = Field(default=1, ge=1, le=16)

    aws_region: str = "us-east-1"
    dynamodb_endpoint: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:8000 for DynamoDB Local"
    )
    dynamodb_table_prefix: str = Field(default="stoker", pattern=r"^[A-Za-z0-9_.\-]{1,200}$")
    sagemaker_endpoint: str | None = None

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
