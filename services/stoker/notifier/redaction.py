"""Targets as they may appear in logs and events: recognisable, never usable.

A Slack incoming-webhook URL, a webhook URL's path and query, a bot token and a signing
secret are all credentials. `describe` keeps only what an operator needs to tell targets
apart; `scrub` removes known secrets from free text (an exception message that quotes a
URL) before it is logged or stored as a failure reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import urlsplit

from stoker.core.notification import ConsoleTarget, FileTarget, Target
from stoker.core.spec import EmailTarget, SlackTarget, WebhookTarget

MASK = "…"
_TAIL = 4


def _tail(secret: str) -> str:
    return secret[-_TAIL:] if len(secret) > 3 * _TAIL else ""


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def describe(target: Target) -> str:
    """A redacted, stable description of `target`."""
    if isinstance(target, SlackTarget):
        if target.webhook_url is not None:
            return f"slack webhook ({MASK}{_tail(str(target.webhook_url).rstrip('/'))})"
        return f"slack channel {target.channel}"
    if isinstance(target, EmailTarget):
        local, _, domain = target.address.partition("@")
        return f"email {local[:1]}{MASK}@{domain}"
    if isinstance(target, WebhookTarget):
        url = str(target.url)
        host = urlsplit(url).hostname or "?"
        return f"webhook {host} ({MASK}{_fingerprint(url)})"
    if isinstance(target, ConsoleTarget):
        return "console"
    if isinstance(target, FileTarget):
        return f"file {target.path}"
    raise TypeError(f"unknown target type {type(target).__name__}")


def secrets_of(target: Target) -> list[str]:
    """The strings of `target` that must never be shown."""
    if isinstance(target, SlackTarget) and target.webhook_url is not None:
        return _url_secrets(str(target.webhook_url))
    if isinstance(target, WebhookTarget):
        return _url_secrets(str(target.url))
    return []


def _url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    found = [url, url.rstrip("/")]
    if parts.path.strip("/"):
        found.append(parts.path)
        # Path segments are where Slack and most webhook providers put their tokens.
        found += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    if parts.query:
        found.append(parts.query)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret replaced by the mask, longest first."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
