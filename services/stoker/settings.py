"""Process settings from the environment (prefix STOKER_). Bad values stop the process
with a message naming the setting and the expected form."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stoker.core.auth import Role
from stoker.core.errors import ConfigurationError

ASYMMETRIC_JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Signature algorithms an OIDC issuer's tokens may use: public-key ones only. An HMAC
algorithm would make the configured public key a shared secret (the classic HS256
confusion), and "none" is no signature at all."""


class Mode(StrEnum):
    """Where events travel (and, unless STOKER_STORE says otherwise, where jobs are kept)."""

    EMBEDDED = "embedded"
    """SQLite durable log and SQLite store in STOKER_DATA_DIR: one machine, nothing to install."""
    KAFKA = "kafka"
    """Kafka bus; DynamoDB store by default, or SQLite (STOKER_STORE=sqlite) on one machine."""
    DYNAMODB = "dynamodb"
    """DynamoDB store, events carried by the job table's DynamoDB Stream (serverless)."""


class StoreKind(StrEnum):
    SQLITE = "sqlite"
    """One file in STOKER_DATA_DIR, shared by the processes of one machine."""
    DYNAMODB = "dynamodb"
    """DynamoDB tables named after STOKER_DYNAMODB_TABLE_PREFIX: many machines."""


class Settings(BaseSettings):
    """Every STOKER_* setting of the services (docs/settings.md lists them)."""

    model_config = SettingsConfigDict(env_prefix="STOKER_", extra="ignore", frozen=True)

    mode: Mode = Field(
        default=Mode.EMBEDDED,
        description="the event bus: embedded (a SQLite log), kafka, or dynamodb (the job "
        "table's stream)",
    )
    store: StoreKind | None = Field(
        default=None,
        description="where jobs are kept: sqlite or dynamodb; unset: sqlite in the embedded "
        "mode, dynamodb in the kafka and dynamodb modes (the dynamodb mode needs dynamodb)",
    )
    data_dir: Path = Field(
        default=Path(".stoker"),
        description="the SQLite files (bus, store, notifier ledger) and local training runs",
    )
    log_level: str = Field(
        default="INFO", description="the least severe level logged: DEBUG, INFO, WARNING, ERROR"
    )
    log_json: bool = Field(default=True, description="JSON log lines (false: console text)")
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
    kafka_partitions: int = Field(
        default=8, ge=1, le=1024, description="partitions of the topics stoker creates"
    )
    kafka_replication: int = Field(
        default=1, ge=1, le=16, description="replication factor of the topics stoker creates"
    )
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

    aws_region: str = Field(default="us-east-1", description="region of every AWS client")
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
    aws_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="connect timeout of the DynamoDB clients"
    )
    aws_read_timeout_s: float = Field(
        default=10.0, gt=0, description="read timeout of the DynamoDB clients"
    )
    dynamodb_endpoint: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:8000 for DynamoDB Local"
    )
    dynamodb_table_prefix: str = Field(
        default="stoker",
        pattern=r"^[A-Za-z0-9_.\-]{1,200}$",
        description="names the DynamoDB tables (`<prefix>-jobs`, ...): one deployment each",
    )
    sagemaker_endpoint: str | None = Field(
        default=None, description="e.g. the SageMaker-API simulator at http://127.0.0.1:8085"
    )

    training_backend: Literal["local", "sagemaker"] | None = Field(
        default=None,
        description="local processes or the SageMaker API; unset: local processes in the "
        "embedded mode only, SageMaker in every other mode (local runs must be asked for)",
    )
    policy_file: Path | None = Field(
        default=None,
        description="YAML or JSON policy limiting what each team may ask for and what local "
        "runs execute (docs/security.md); unset: the built-in policy, which limits nothing "
        "but local runs (the training scripts shipped with stoker only)",
    )
    instance_caps: dict[str, int] = Field(
        default_factory=dict,
        description='JSON: concurrent jobs per instance type, e.g. {"ml.p3.2xlarge": 4}',
    )
    default_instance_cap: int | None = Field(
        default=None,
        ge=0,
        description="concurrent jobs of an instance type not in instance_caps (unset: no cap)",
    )
    monitor_poll_interval_s: float | None = Field(
        default=None,
        gt=0,
        description="time between the monitor's ListTrainingJobs passes; default: 1 s for "
        "local processes, 20 s for SageMaker (a pass when nothing changed is one request)",
    )
    sagemaker_state_changes: bool = Field(
        default=False,
        description="also follow EventBridge state-change events on stoker.sagemaker.state-changes",
    )
    monitor_api_rate_per_s: float = Field(
        default=2.0,
        gt=0,
        description="SageMaker requests per second the monitor spends at most (its share of "
        "the account's API rate)",
    )
    launcher_heartbeat_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often each launcher renews its lease in the job store and looks for "
        "launchers whose lease expired",
    )
    launcher_lease_ttl_s: float = Field(
        default=5.0,
        gt=0,
        description="how long a launcher's lease lasts unrenewed: a launcher silent this long "
        "is taken for dead and a peer takes over its half-done launches and queued jobs; at "
        "least twice STOKER_LAUNCHER_HEARTBEAT_INTERVAL_S, and host clocks must agree to well "
        "within it",
    )
    slot_reconcile_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="how often a launcher with jobs waiting on a full instance type looks for "
        "slots nobody uses any more (their release was lost with a killed process)",
    )
    monitor_heartbeat_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often the active monitor renews its lease, and a standby monitor "
        "asks for it",
    )
    monitor_lease_ttl_s: float = Field(
        default=5.0,
        gt=0,
        description="how long the active monitor's lease lasts unrenewed: a standby takes over "
        "this long after the active one died; at least twice "
        "STOKER_MONITOR_HEARTBEAT_INTERVAL_S",
    )
    outbox_gather_ms: int = Field(
        default=20,
        ge=0,
        le=1_000,
        description="how long the events of job transitions (other than a new job's, which "
        "go at once) wait for more before one publish carries them all",
    )
    retry_initial_delay_s: float = Field(
        default=30.0, ge=0, description="wait before the second attempt of a failed job"
    )
    retry_multiplier: float = Field(
        default=2.0, ge=1, description="each further wait is this many times the last"
    )
    retry_max_delay_s: float = Field(default=900.0, ge=0, description="longest wait")
    retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="random share of each wait, either way"
    )
    retry_max_attempts: int = Field(
        default=3, ge=1, description="attempts of a job, the first included, before Failed"
    )
    failure_rules: list[dict[str, str]] = Field(
        default_factory=list,
        description='JSON: extra rules, tried before the defaults, e.g. [{"reason_pattern": '
        '"CUDA out of memory", "action": "retry"}] (docs/training-backends.md)',
    )
    api_host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    api_port: int = Field(default=8080, ge=1, le=65535, description="port of the HTTP API")
    dashboard_router_metrics_url: str | None = Field(
        default=None,
        min_length=1,
        description="the inference router's Prometheus endpoint (e.g. "
        "http://127.0.0.1:8090/metrics) the dashboard's router panel reads; unset: no panel",
    )
    dashboard_endpoint_metrics_url: str | None = Field(
        default=None,
        min_length=1,
        description="the multi-model endpoint's Prometheus endpoint (GET /metrics of `stoker "
        "endpoints serve`, e.g. http://127.0.0.1:8080/metrics) the dashboard's endpoint panel "
        "reads; unset: no panel",
    )
    dashboard_trace_url: str | None = Field(
        default=None,
        pattern=r"\{trace_id\}",
        description="where the dashboard links a job's trace id, with `{trace_id}` in it (e.g. "
        "http://127.0.0.1:16686/trace/{trace_id}); unset: the id is shown as text",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address of each service process's Prometheus endpoint (GET /metrics, "
        "no token: docs/observability.md)",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="port of that endpoint (0: none); processes on one machine need one each",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        min_length=1,
        description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces; unset: "
        "spans only when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, else none",
    )

    # OIDC/JWT: bearer tokens signed by an identity provider (docs/security.md, "OIDC / JWT").
    oidc_issuer: str | None = Field(
        default=None,
        min_length=1,
        description="the `iss` every accepted token carries; unset: no JWT is accepted",
    )
    oidc_audience: str | None = Field(
        default=None, min_length=1, description="the `aud` a token must name (stoker's client id)"
    )
    oidc_key_file: Path | None = Field(
        default=None, description="PEM file of the issuer's public key (or its certificate)"
    )
    oidc_jwks_file: Path | None = Field(
        default=None, description="JWKS file of the issuer's keys, chosen by the token's `kid`"
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="the issuer's JWKS URL (https), fetched at the first token and cached",
    )
    oidc_jwks_cache_s: float = Field(
        default=300.0, gt=0, le=86_400, description="how long fetched JWKS keys are used"
    )
    oidc_jwks_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="longest wait for the issuer's JWKS URL (s)"
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        min_length=1,
        description='JSON: accepted signature algorithms, e.g. ["RS256"]',
    )
    oidc_leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="clock skew allowed on exp, nbf and iat"
    )
    oidc_subject_claim: str = Field(
        default="sub", min_length=1, description="claim whose value becomes the job owner"
    )
    oidc_team_claim: str = Field(
        default="team", min_length=1, description="claim whose value is the caller's team"
    )
    oidc_role_claim: str = Field(
        default="role",
        min_length=1,
        description="claim holding a role, or a list of values mapped by oidc_role_map",
    )
    oidc_role_map: dict[str, Role] = Field(
        default_factory=dict,
        description='JSON: role-claim value to stoker role, e.g. {"ml-admins": "admin"}; '
        "empty: the values are stoker role names",
    )
    oidc_default_role: Role | None = Field(
        default=None,
        description="role of a token whose role claim names none (unset: such tokens are refused)",
    )

    # Rate limits per credential (docs/security.md, "Rate limits and quotas"); 0: no limit.
    api_rate_per_s: float = Field(
        default=20.0, ge=0, description="requests per second per credential on the jobs API"
    )
    api_rate_burst: float = Field(
        default=40.0, ge=1, description="requests a credential may send at once to the jobs API"
    )
    router_rate_per_s: float = Field(
        default=1000.0,
        ge=0,
        description="requests per second per credential on one inference router",
    )
    router_rate_burst: float = Field(
        default=2000.0, ge=1, description="requests a credential may send at once to a router"
    )
    team_max_in_flight: int = Field(
        default=0, ge=0, description="jobs a team may have not yet ended (0: no quota)"
    )
    team_max_in_flight_overrides: dict[str, int] = Field(
        default_factory=dict,
        description='JSON: per-team quotas over team_max_in_flight, e.g. {"search": 50} '
        "(0: no quota for that team)",
    )

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

    @field_validator("oidc_algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        refused = [a for a in value if a not in ASYMMETRIC_JWT_ALGORITHMS]
        if refused:
            raise ValueError(
                f"{refused} not allowed: expected public-key algorithms from "
                f"{sorted(ASYMMETRIC_JWT_ALGORITHMS)}"
            )
        return value

    @field_validator("oidc_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and loopback)
        ):
            raise ValueError("expected an https:// URL (http:// only on a loopback address)")
        return value

    @field_validator("team_max_in_flight_overrides")
    @classmethod
    def _overrides(cls, value: dict[str, int]) -> dict[str, int]:
        negative = {team: n for team, n in value.items() if n < 0}
        if negative:
            raise ValueError(f"quotas must be >= 0, got {negative}")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """An issuer needs an audience and exactly one source of keys; keys need an issuer."""
        sources = {
            "STOKER_OIDC_KEY_FILE": self.oidc_key_file,
            "STOKER_OIDC_JWKS_FILE": self.oidc_jwks_file,
            "STOKER_OIDC_JWKS_URL": self.oidc_jwks_url,
        }
        given = [name for name, value in sources.items() if value is not None]
        if self.oidc_issuer is None:
            if given or self.oidc_audience is not None:
                named = [*given, *(["STOKER_OIDC_AUDIENCE"] if self.oidc_audience else [])]
                raise ValueError(f"STOKER_OIDC_ISSUER is required when {', '.join(named)} is set")
            return self
        if self.oidc_audience is None:
            raise ValueError("STOKER_OIDC_AUDIENCE is required when STOKER_OIDC_ISSUER is set")
        if len(given) != 1:
            raise ValueError(
                "STOKER_OIDC_ISSUER needs exactly one of "
                + ", ".join(sources)
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @model_validator(mode="after")
    def _leases_outlast_heartbeats(self) -> Settings:
        """A lease must survive a missed renewal, or a live process passes for dead."""
        for role in ("launcher", "monitor"):
            ttl_s = getattr(self, f"{role}_lease_ttl_s")
            heartbeat_s = getattr(self, f"{role}_heartbeat_interval_s")
            if not ttl_s >= 2 * heartbeat_s:
                raise ValueError(
                    f"STOKER_{role.upper()}_LEASE_TTL_S must be at least twice "
                    f"STOKER_{role.upper()}_HEARTBEAT_INTERVAL_S (got {ttl_s} and {heartbeat_s})"
                )
        return self

    @model_validator(mode="after")
    def _store_fits_the_mode(self) -> Settings:
        if self.mode is Mode.DYNAMODB and self.store is StoreKind.SQLITE:
            raise ValueError(
                "STOKER_STORE: the dynamodb mode carries events on the job table's stream, so "
                "its store is dynamodb (got sqlite)"
            )
        return self

    @property
    def store_kind(self) -> StoreKind:
        if self.store is not None:
            return self.store
        return StoreKind.SQLITE if self.mode is Mode.EMBEDDED else StoreKind.DYNAMODB

    @property
    def backend_kind(self) -> Literal["local", "sagemaker"]:
        if self.training_backend is not None:
            return self.training_backend
        return "local" if self.mode is Mode.EMBEDDED else "sagemaker"

    @property
    def poll_interval_s(self) -> float:
        if self.monitor_poll_interval_s is not None:
            return self.monitor_poll_interval_s
        return 1.0 if self.backend_kind == "local" else 20.0


def load_settings() -> Settings:
    """Settings from the environment, or a ConfigurationError naming each bad one."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            if not err["loc"]:
                # A check across settings: its message names each setting itself.
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            # The first part names the setting, the rest a key or index inside its JSON.
            setting, *inside = err["loc"]
            name = f"STOKER_{str(setting).upper()}" + "".join(f"[{p!r}]" for p in inside)
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc
