"""Notifier settings from the environment (prefix STOKER_NOTIFY_).

Values that hold credentials (notification URLs, signing secrets, the Slack bot token)
are SecretStr, so printing the settings never prints them. Lists and maps are JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from stoker.core.errors import ConfigurationError
from stoker.core.notification import ConsoleTarget, FileTarget
from stoker.core.outbound import OutboundPolicy
from stoker.core.retry import RetryPolicy
from stoker.core.spec import SECRET_REF_PATTERN, EmailTarget, SlackTarget, WebhookTarget

AnyTarget = Annotated[
    SlackTarget | EmailTarget | WebhookTarget | ConsoleTarget | FileTarget,
    Field(discriminator="kind"),
]


class NotifySecret(BaseModel):
    """One notification secret of a team: a URL (a webhook's or a Slack incoming webhook's),
    and for webhooks optionally the secret that signs the body. Written as the URL alone
    (`"https://..."`) or as `{"url": "...", "signing_secret": "..."}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: SecretStr
    signing_secret: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _url_alone(cls, value: object) -> object:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _looks_like_a_url(self) -> NotifySecret:
        # The value is not quoted in the error: it is the secret.
        url = self.url.get_secret_value()
        if not url.lower().startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        if self.signing_secret is not None and not self.signing_secret.get_secret_value():
            raise ValueError("signing_secret must not be empty")
        return self


TeamSecretMap = dict[
    Annotated[str, Field(min_length=1, max_length=128)],
    dict[Annotated[str, Field(pattern=SECRET_REF_PATTERN)], NotifySecret],
]


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOKER_NOTIFY_", extra="ignore", frozen=True)

    digest_window_s: float = Field(
        default=30.0, ge=0, description="per owner and target: later jobs collapse into a digest"
    )
    default_targets: list[AnyTarget] = Field(
        default_factory=list, description="JSON list of targets every job also notifies"
    )
    owner_targets: dict[str, list[AnyTarget]] = Field(
        default_factory=dict, description="JSON map owner -> targets added for that owner's jobs"
    )
    fallback: Literal["console", "file", "none"] = Field(
        default="console", description="where a job with no target at all is reported"
    )
    file_path: Path | None = Field(
        default=None,
        description="file for the `file` fallback (default <data_dir>/notifications.jsonl)",
    )
    secrets: TeamSecretMap = Field(
        default_factory=dict,
        description="JSON map team -> secret_ref -> URL, or -> {url, signing_secret}",
    )
    secrets_file: Path | None = Field(
        default=None,
        description="a JSON file of the same shape as `secrets` (e.g. a mounted secret); "
        "entries of `secrets` win over the file's",
    )
    allow_loopback: bool = Field(
        default=False,
        description="development only: http and loopback addresses for notification URLs, "
        "and raw loopback URLs in job specs",
    )
    allowlist: list[str] = Field(
        default_factory=list,
        description="JSON list of networks (CIDR) and host names (`*.example.com` for "
        "subdomains) notification URLs may reach although they are not public",
    )
    slack_bot_token: SecretStr | None = Field(default=None, description="for chat.postMessage")
    slack_api_url: str = Field(default="https://slack.com/api/", description="Web API base URL")
    sns_topic_arn: str | None = Field(default=None, description="topic email targets publish to")
    sns_endpoint: str | None = Field(default=None, description="e.g. a moto server in tests")
    ledger: Literal["auto", "sqlite", "dynamodb", "memory"] = Field(
        default="auto", description="auto: beside the job store (STOKER_STORE: sqlite or dynamodb)"
    )
    ledger_path: Path | None = Field(
        default=None, description="SQLite ledger file (default <data_dir>/notifier-ledger.sqlite3)"
    )
    ledger_table: str | None = Field(
        default=None, description="DynamoDB table (default <prefix>-notifications)"
    )
    max_attempts: int = Field(
        default=8, ge=1, le=100, description="sends of a message before it is marked failed"
    )
    initial_backoff_s: float = Field(
        default=1.0, ge=0, description="first wait without a Retry-After, doubled each time"
    )
    max_backoff_s: float = Field(
        default=300.0,
        ge=0,
        description="cap on any wait, Retry-After included, so a receiver asking for an hour "
        "cannot park a message silently",
    )
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="fraction of a backoff drawn at random"
    )
    max_in_flight: int = Field(default=16, ge=1, le=1000, description="messages sent at once")
    scan_interval_s: float = Field(
        default=5.0, gt=0, description="how often the ledger is re-read for pending entries"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="per HTTP request")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="to connect to a receiver (within timeout_s)"
    )
    max_response_bytes: int = Field(
        default=65536, ge=0, description="of a receiver's answer read; the rest is dropped"
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="on stop, how long sends in flight may finish"
    )

    def retry(self) -> RetryPolicy:
        """How a deferred delivery is retried: a receiver's Retry-After when it gives one
        (capped by max_backoff_s), the doubling backoff otherwise."""
        return RetryPolicy(
            initial_delay_s=self.initial_backoff_s,
            multiplier=2.0,
            max_delay_s=max(self.max_backoff_s, self.initial_backoff_s),
            jitter=self.jitter,
            max_attempts=self.max_attempts,
        )

    @field_validator("allowlist")
    @classmethod
    def _allowlist_is_valid(cls, value: list[str]) -> list[str]:
        OutboundPolicy(allowlist=tuple(value))  # raises naming a bad entry
        return value

    def outbound_policy(self) -> OutboundPolicy:
        """The SSRF rules for notification URLs (see stoker.core.outbound)."""
        return OutboundPolicy(allow_loopback=self.allow_loopback, allowlist=tuple(self.allowlist))


def load_notify_settings() -> NotifySettings:
    """Settings from the environment, or a ConfigurationError naming each bad one."""
    try:
        return NotifySettings()
    except SettingsError as exc:
        # Raised when a JSON value does not parse; its text names the field, not the value.
        found = re.search(r'field "(\w+)"', str(exc))
        name = "STOKER_NOTIFY_" + (found.group(1).upper() if found else "?")
        raise ConfigurationError(f"invalid notifier settings: {name}: not valid JSON") from exc
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(part) for part in err["loc"]]
            # Team and ref names may follow the setting's name; values never do.
            name = "STOKER_NOTIFY_" + ".".join([loc[0].upper(), *loc[1:]]) if loc else "?"
            # The input is not echoed: it may be a secret.
            problems.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid notifier settings: " + "; ".join(problems)) from exc
