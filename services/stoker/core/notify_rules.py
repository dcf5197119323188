"""What a submitter may put in a job's `notify` list. Pure: the caller supplies the names of
each team's notification secrets.

- A webhook or Slack incoming-webhook URL is a credential, so a spec names it by
  `secret_ref`, and only a secret of the job's own team.
- A raw URL (`url`, `webhook_url`) is refused, except a loopback URL when development
  allows loopback (`STOKER_NOTIFY_ALLOW_LOOPBACK`): a receiver on the developer's machine.

The same answer is given for a ref another team has and a ref no team has, so a refusal
says nothing about other teams' secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stoker.core.auth import DEFAULT_TEAM
from stoker.core.job import JobRecord
from stoker.core.outbound import is_loopback_host
from stoker.core.spec import JobSpec, SlackTarget, WebhookTarget

"""The team of a job whose record names none (records written before teams existed)."""


def job_team(job: JobRecord) -> str:
    """The team a job record belongs to.

    The record's `team` field is set from the submitter's credential; a record without one
    belongs to DEFAULT_TEAM."""
    team = getattr(job, "team", None)
    return team if isinstance(team, str) and team else DEFAULT_TEAM


@dataclass(frozen=True)
class NotifyRules:
    """The submit-time check of `notify`: `problems(spec, team)` maps each refused field to
    why (empty when the list is fine)."""

    refs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per team, the names of its notification secrets."""
    allow_loopback: bool = False
    """Development: raw loopback URLs are accepted."""

    def problems(self, spec: JobSpec, team: str) -> dict[str, str]:
        found: dict[str, str] = {}
        own = self.refs.get(team, frozenset())
        for index, target in enumerate(spec.notify):
            if not isinstance(target, WebhookTarget | SlackTarget):
                continue
            if target.secret_ref is not None and target.secret_ref not in own:
                found[f"notify.{index}.secret_ref"] = (
                    f"team {team!r} has no notification secret named {target.secret_ref!r}"
                )
            name, raw = (
                ("url", target.url)
                if isinstance(target, WebhookTarget)
                else ("webhook_url", target.webhook_url)
            )
            if raw is None:
                continue
            if self.allow_loopback and is_loopback_host(raw.host or ""):
                continue
            found[f"notify.{index}.{name}"] = (
                "a notification URL is a credential: store it as a team secret "
                "(STOKER_NOTIFY_SECRETS) and name it in secret_ref"
            )
        return found
