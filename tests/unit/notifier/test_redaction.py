"""Targets in logs and events are described, never spelled out."""

from __future__ import annotations

from stoker.core.notification import ConsoleTarget, FileTarget
from stoker.core.spec import EmailTarget, SlackTarget, WebhookTarget
from stoker.notifier.redaction import describe, scrub, secrets_of

SLACK_URL = "https://hooks.slack.com/services/T000AAAA/B000BBBB/XXXXXXXXXXXXXXXXXXXXabcd"
HOOK_URL = "https://ci.example.com/hooks/9f8e7d6c5b4a?token=sekrit-token-value"


def test_slack_webhook_shows_only_the_last_four_characters() -> None:
    """ "slack webhook (…abcd)": enough to tell two hooks apart, useless to an attacker."""
    text = describe(SlackTarget(webhook_url=SLACK_URL))  # type: ignore[arg-type]
    assert text == "slack webhook (…abcd)"
    assert "T000AAAA" not in text
    assert "hooks.slack.com/services" not in text


def test_webhook_shows_host_and_a_fingerprint_only() -> None:
    """Path and query (where tokens live) are replaced by a hash prefix."""
    text = describe(WebhookTarget(url=HOOK_URL))  # type: ignore[arg-type]
    assert text.startswith("webhook ci.example.com (…")
    assert "9f8e7d6c5b4a" not in text
    assert "sekrit" not in text


def test_other_targets_are_described_plainly() -> None:
    """Channels, consoles and files are not secrets; email local parts are shortened."""
    assert describe(SlackTarget(channel="#ml-jobs")) == "slack channel #ml-jobs"
    assert describe(EmailTarget(address="alice@example.com")) == "email a…@example.com"
    assert describe(ConsoleTarget()) == "console"
    assert describe(FileTarget(path="/tmp/n.jsonl")) == "file /tmp/n.jsonl"


def test_scrub_removes_every_secret_part_of_a_url_from_free_text() -> None:
    """An error message quoting the URL, its path or a token segment loses all of them."""
    secrets = secrets_of(WebhookTarget(url=HOOK_URL))  # type: ignore[arg-type]
    text = f"POST {HOOK_URL} failed; path /hooks/9f8e7d6c5b4a; q token=sekrit-token-value"
    cleaned = scrub(text, secrets)
    assert "9f8e7d6c5b4a" not in cleaned
    assert "sekrit-token-value" not in cleaned
    assert cleaned.startswith("POST … failed")


def test_scrub_leaves_text_without_secrets_alone() -> None:
    """Nothing known, nothing changed."""
    assert scrub("HTTP 503", ["abc-token"]) == "HTTP 503"
