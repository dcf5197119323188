"""Notifier settings from the environment (prefix STOKER_NOTIFY_).

Values that hold credentials (signing secrets, the Slack bot token) are SecretStr, so
printing the settings never prints them. Lists and maps are JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from stoker.core.errors import ConfigurationError
from stoker.core.notification import ConsoleTarget, FileTarget
from stoker.core.retry import RetryPolicy
from stoker.core.spec import EmailTarget, SlackTarget, WebhookTarget

AnyTarget = Annotated[
    SlackTarget | EmailTarget | WebhookTarget | ConsoleTarget | FileTarget,
    Field(discriminator="kind"),
]


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOKER_NOTIFY_", extra="ignore", frozen=True)

    digest_window_s: float = Field(
        default=60.0, ge=0, description="per owner and target: later jobs collapse into a digest"
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
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="JSON map secret_ref -> webhook signing secret"
    )
    slack_bot_token: SecretStr | None = Field(default=None, description="for chat.postMessage")
    slack_api_url: str = Field(default="https://slack.com/api/")
    sns_topic_arn: str | None = Field(default=None, description="topic email targets publish to")
    sns_endpoint: str | None = Field(default=None, description="e.g. a moto server in tests")
    ledger: Literal["auto", "sqlite", "dynamodb", "memory"] = Field(
        default="auto", description="auto: sqlite in embedded mode, dynamodb otherwise"
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

    def secret(self, ref: str) -> str | None:
        value = self.secrets.get(ref)
        return value.get_secret_value() if value is not None else None

    def all_secrets(self) -> list[str]:
        """Every configured credential, for scrubbing free text."""
        found = [v.get_secret_value() for v in self.secrets.values()]
        if self.slack_bot_token is not None:
            found.append(self.slack_bot_token.get_secret_value())
        return found


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
            name = "STOKER_NOTIFY_" + str(err["loc"][0]).upper() if err["loc"] else "?"
            # The input is not echoed: it may be a secret.
            problems.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid notifier settings: " + "; ".join(problems)) from exc
