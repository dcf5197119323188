"""Each team's notification secrets, and resolving a target's `secret_ref` in its job's team.

Secrets come from STOKER_NOTIFY_SECRETS and STOKER_NOTIFY_SECRETS_FILE (the same JSON
shape: team -> ref -> URL or {url, signing_secret}); an entry of the setting wins over the
file's. A ref resolves only in the team of the job being notified: a ref of another team
is a failed delivery that says so, without the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from stoker.core.errors import ConfigurationError
from stoker.core.notification import Endpoint, Target
from stoker.core.notify_rules import NotifyRules
from stoker.core.redaction import remember_secrets
from stoker.core.spec import SlackTarget, WebhookTarget
from stoker.notifier.config import NotifySecret, NotifySettings, TeamSecretMap
from stoker.ports.channel import DeliveryRejected

_FILE = TypeAdapter[TeamSecretMap](TeamSecretMap)


class SecretRefRefused(DeliveryRejected):
    """A target names a secret its job's team does not have. Final: nothing is sent."""


class TeamSecrets:
    """team -> ref -> secret, read once at start."""

    def __init__(self, by_team: Mapping[str, Mapping[str, NotifySecret]]) -> None:
        self._by_team = {team: dict(refs) for team, refs in by_team.items()}

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> TeamSecrets:
        """The secrets of the setting and of the file it names, or a ConfigurationError
        naming the problem (never a value)."""
        merged: dict[str, dict[str, NotifySecret]] = {}
        if settings.secrets_file is not None:
            for team, refs in _read_file(settings.secrets_file).items():
                merged.setdefault(team, {}).update(refs)
        for team, refs in settings.secrets.items():
            merged.setdefault(team, {}).update(refs)
        return cls(merged)

    def names(self) -> dict[str, frozenset[str]]:
        """Per team, the names of its secrets (what the submit check needs)."""
        return {team: frozenset(refs) for team, refs in self._by_team.items()}

    def values(self) -> list[str]:
        """Every secret value, for masking free text."""
        found: list[str] = []
        for refs in self._by_team.values():
            for secret in refs.values():
                found.append(secret.url.get_secret_value())
                if secret.signing_secret is not None:
                    found.append(secret.signing_secret.get_secret_value())
        return found

    def endpoint(self, target: Target, team: str) -> Endpoint | None:
        """Where a `secret_ref` target of a job of `team` goes; None for a target that
        carries its own destination. SecretRefRefused when the team has no such secret."""
        if not isinstance(target, WebhookTarget | SlackTarget) or target.secret_ref is None:
            return None
        secret = self._by_team.get(team, {}).get(target.secret_ref)
        if secret is None:
            raise SecretRefRefused(
                f"secret_ref {target.secret_ref!r} is not a notification secret of team "
                f"{team!r} (a team may use only its own, from STOKER_NOTIFY_SECRETS)"
            )
        signing = secret.signing_secret.get_secret_value() if secret.signing_secret else None
        return Endpoint(url=secret.url.get_secret_value(), signing_secret=signing)


def _read_file(path: Path) -> TeamSecretMap:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"STOKER_NOTIFY_SECRETS_FILE: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    try:
        return _FILE.validate_json(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "<root>"
            # Only the path and the message: the input may be a secret.
            problems.append(f"{where}: {err['msg']}")
        raise ConfigurationError(
            f"STOKER_NOTIFY_SECRETS_FILE {path}: " + "; ".join(problems)
        ) from exc


def load_team_secrets(settings: NotifySettings) -> TeamSecrets:
    """The team secrets, with their values (and the Slack bot token) remembered for
    redaction in every log, dead letter and answer of this process."""
    secrets = TeamSecrets.from_settings(settings)
    values = secrets.values()
    if settings.slack_bot_token is not None:
        values.append(settings.slack_bot_token.get_secret_value())
    remember_secrets(values)
    return secrets


def submit_rules(settings: NotifySettings, secrets: TeamSecrets) -> NotifyRules:
    """The check a submission's `notify` list must pass (see stoker.core.notify_rules)."""
    return NotifyRules(refs=secrets.names(), allow_loopback=settings.allow_loopback)
