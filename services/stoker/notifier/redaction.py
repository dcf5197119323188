"""Targets as they may appear in logs and events: recognisable, never usable.

A Slack incoming-webhook URL, a webhook URL's path and query, a bot token and a signing
secret are all credentials. `describe` keeps only what an operator needs to tell targets
apart (a `secret_ref` target by its ref's name); `scrub` removes known secrets and every
credential shape (stoker.core.redaction) from free text (an exception message that quotes
a URL) before it is logged or stored as a failure reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import urlsplit

from stoker.core.notification import ConsoleTarget, Endpoint, FileTarget, Target
from stoker.core.redaction import redact_text, url_secret_parts
from stoker.core.spec import EmailTarget, SlackTarget, WebhookTarget

MASK = "…"
_TAIL = 4


def _tail(secret: str) -> str:
    return secret[-_TAIL:] if len(secret) > 3 * _TAIL else ""


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def describe(target: Target) -> str:
    """A redacted, stable description of `target`."""
    if isinstance(target, SlackTarget | WebhookTarget):
        return _describe_url_target(target)
    if isinstance(target, EmailTarget):
        local, _, domain = target.address.partition("@")
        return f"email {local[:1]}{MASK}@{domain}"
    if isinstance(target, ConsoleTarget):
        return "console"
    if isinstance(target, FileTarget):
        return f"file {target.path}"
    raise TypeError(f"unknown target type {type(target).__name__}")


def _describe_url_target(target: SlackTarget | WebhookTarget) -> str:
    if isinstance(target, SlackTarget):
        if target.secret_ref is not None:
            return f"slack webhook ref {target.secret_ref}"
        if target.webhook_url is not None:
            return f"slack webhook ({MASK}{_tail(str(target.webhook_url).rstrip('/'))})"
        return f"slack channel {target.channel}"
    if target.url is None:
        return f"webhook ref {target.secret_ref}"
    url = str(target.url)
    host = urlsplit(url).hostname or "?"
    return f"webhook {host} ({MASK}{_fingerprint(url)})"


def secrets_of(target: Target, endpoint: Endpoint | None = None) -> list[str]:
    """The strings of `target` (and of the endpoint it resolved to) never to be shown."""
    found: list[str] = []
    if isinstance(target, SlackTarget) and target.webhook_url is not None:
        found += url_secret_parts(str(target.webhook_url))
    if isinstance(target, WebhookTarget) and target.url is not None:
        found += url_secret_parts(str(target.url))
    if endpoint is not None:
        found += url_secret_parts(endpoint.url)
        if endpoint.signing_secret:
            found.append(endpoint.signing_secret)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret replaced by the mask, longest first, then every
    credential shape masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_text(text)
