"""Each channel against a real HTTP server on 127.0.0.1: what goes on the wire, and how
answers become delivered / deferred / rejected. The receivers are on loopback, so the
HTTP channels run with the development allowance of the outgoing-request policy."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import orjson
import pytest

from stoker.adapters.notifier.console import ConsoleChannel, FileChannel
from stoker.adapters.notifier.outbound import OutboundHttp
from stoker.adapters.notifier.slack import SlackChannel
from stoker.adapters.notifier.webhook import WebhookChannel
from stoker.core.job import JobStatus
from stoker.core.notification import (
    ConsoleTarget,
    Endpoint,
    FileTarget,
    JobNote,
    Notification,
    Target,
)
from stoker.core.outbound import OutboundPolicy
from stoker.core.spec import SlackTarget, WebhookTarget
from stoker.notifier import signing
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected
from tests.unit.notifier.support import T0, Receiver


def loopback_http() -> OutboundHttp:
    return OutboundHttp(OutboundPolicy(allow_loopback=True))


def message(target: Target, jobs: int = 1, endpoint: Endpoint | None = None) -> Notification:
    notes = tuple(
        JobNote(
            job_id=f"j{n}",
            owner="alice",
            state=JobStatus.FAILED if n else JobStatus.COMPLETED,
            attempts=2,
            reason="CapacityError" if n else None,
            ended_at=T0,
            duration_s=3725.0,
        )
        for n in range(jobs)
    )
    return Notification("key-123", "alice", target, notes, endpoint=endpoint)


def hook(receiver: Receiver) -> WebhookTarget:
    return WebhookTarget(url=receiver.url())  # type: ignore[arg-type]


async def test_webhook_is_signed_and_carries_the_idempotency_key() -> None:
    """A ref target goes to its resolved URL; header and body carry the key; the signature
    verifies with the secret's signing secret."""
    async with Receiver(secret="whsec") as receiver:
        channel = WebhookChannel(loopback_http())
        resolved = Endpoint(url=receiver.url("/team-hook"), signing_secret="whsec")
        try:
            await channel.send(message(WebhookTarget(secret_ref="ci"), endpoint=resolved))
        finally:
            await channel.close()
        [delivery] = receiver.accepted
        assert delivery.path == "/team-hook"
        assert delivery.key == "key-123"
        assert delivery.json()["idempotency_key"] == "key-123"
        header = delivery.headers[signing.HEADER]
        signing.verify("whsec", header, delivery.body, int(time.time()))


async def test_webhook_without_a_signing_secret_is_sent_unsigned() -> None:
    """A raw URL (development) has no signing secret: no signature header, still the key."""
    async with Receiver() as receiver:
        channel = WebhookChannel(loopback_http())
        try:
            await channel.send(message(hook(receiver)))
        finally:
            await channel.close()
        [delivery] = receiver.accepted
        assert signing.HEADER not in delivery.headers


async def test_webhook_ref_target_without_a_resolved_endpoint_is_rejected() -> None:
    """A ref the notifier did not resolve is never guessed at: rejected, nothing sent."""
    channel = WebhookChannel(loopback_http())
    try:
        with pytest.raises(DeliveryRejected, match="did not resolve"):
            await channel.send(message(WebhookTarget(secret_ref="missing")))
    finally:
        await channel.close()


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "12"}, DeliveryDeferred, 12.0),
        (503, {}, DeliveryDeferred, None),
        (500, {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, DeliveryDeferred, 0.0),
        (404, {}, DeliveryRejected, None),
        (400, {"Retry-After": "5"}, DeliveryRejected, None),
    ],
)
async def test_webhook_answers_map_to_deferred_or_rejected(
    status: int, headers: dict[str, str], error: type[Exception], retry_after: float | None
) -> None:
    """429 and 5xx are retriable (with the receiver's Retry-After); other 4xx are final."""
    async with Receiver(script=[(status, headers)]) as receiver:
        channel = WebhookChannel(loopback_http())
        try:
            with pytest.raises(error) as caught:
                await channel.send(message(hook(receiver)))
        finally:
            await channel.close()
    assert caught.value.retriable is (error is DeliveryDeferred)  # type: ignore[attr-defined]
    if isinstance(caught.value, DeliveryDeferred):
        assert caught.value.retry_after_s == retry_after
    assert f"HTTP {status}" in str(caught.value)


async def test_an_unreachable_webhook_is_deferred_and_its_url_is_not_in_the_error() -> None:
    """Connection refused is retriable; the message names the host, never the path."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = WebhookTarget(url=f"http://127.0.0.1:{port}/hooks/s3cr3t-path-token")  # type: ignore[arg-type]
    channel = WebhookChannel(loopback_http())
    try:
        with pytest.raises(DeliveryDeferred) as caught:
            await channel.send(message(target))
    finally:
        await channel.close()
    assert "s3cr3t-path-token" not in str(caught.value)


async def test_slack_bot_posts_block_kit_with_metadata_through_chat_post_message() -> None:
    """chat.postMessage gets the token, the channel, the blocks and the key as metadata."""
    async with Receiver(reply='{"ok": true, "ts": "1.2"}') as receiver:
        channel = SlackChannel("xoxb-test-token", api_base_url=receiver.url("/api/"))
        await channel.send(message(SlackTarget(channel="#ml"), jobs=3))
        [delivery] = receiver.accepted
    assert delivery.path == "/api/chat.postMessage"
    assert delivery.headers["Authorization"] == "Bearer xoxb-test-token"
    body = orjson.loads(delivery.body)
    assert body["channel"] == "#ml"
    metadata = body["metadata"]
    if isinstance(metadata, str):
        metadata = orjson.loads(metadata)
    assert metadata["event_payload"]["idempotency_key"] == "key-123"
    blocks = body["blocks"] if isinstance(body["blocks"], list) else orjson.loads(body["blocks"])
    text = str(blocks)
    assert "3 jobs of alice finished (1 Completed, 2 Failed)" in text
    assert "1h02m05s" in text


async def test_slack_rate_limit_is_deferred_with_its_retry_after() -> None:
    """HTTP 429 from the Web API is retriable after the wait Slack asked for."""
    async with Receiver(
        script=[(429, {"Retry-After": "30"})], script_body='{"ok": false, "error": "ratelimited"}'
    ) as receiver:
        channel = SlackChannel("xoxb-test-token", api_base_url=receiver.url("/api/"))
        with pytest.raises(DeliveryDeferred) as caught:
            await channel.send(message(SlackTarget(channel="#ml")))
    assert caught.value.retry_after_s == 30.0


async def test_slack_webhook_refusal_is_final_and_redacted() -> None:
    """A removed incoming webhook (404 no_service) is rejected; the error shows …tail only."""
    async with Receiver(script=[(404, {})], script_body="no_service") as receiver:
        url = receiver.url("/services/T1/B1/verysecrettokenvalue9876")
        channel = SlackChannel(http=loopback_http())
        with pytest.raises(DeliveryRejected) as caught:
            await channel.send(message(SlackTarget(webhook_url=url)))  # type: ignore[arg-type]
    assert "verysecrettokenvalue" not in str(caught.value)
    assert "(…9876)" in str(caught.value)
    assert "no_service" in str(caught.value)


async def test_slack_incoming_webhook_from_a_secret_posts_block_kit() -> None:
    """A ref target posts the Block Kit message to the URL its secret resolved to."""
    async with Receiver() as receiver:
        resolved = Endpoint(url=receiver.url("/services/T1/B1/tokentokentoken"))
        channel = SlackChannel(http=loopback_http())
        await channel.send(message(SlackTarget(secret_ref="ml"), jobs=2, endpoint=resolved))
        [delivery] = receiver.accepted
    assert delivery.path == "/services/T1/B1/tokentokentoken"
    body = delivery.json()
    assert body["text"].startswith("stoker: 2 jobs of alice finished")
    assert body["blocks"][0]["type"] == "header"


async def test_slack_channel_target_without_a_bot_token_is_rejected() -> None:
    """Posting to a channel needs the bot token setting; the error says which."""
    with pytest.raises(DeliveryRejected, match="STOKER_NOTIFY_SLACK_BOT_TOKEN"):
        await SlackChannel().send(message(SlackTarget(channel="#ml")))


async def test_file_channel_appends_one_json_line_per_message(tmp_path: Path) -> None:
    """The embedded default keeps a readable record: one payload per line."""
    path = tmp_path / "out" / "n.jsonl"
    channel = FileChannel()
    await channel.send(message(FileTarget(path=str(path))))
    await channel.send(message(FileTarget(path=str(path)), jobs=2))
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [len(line["jobs"]) for line in lines] == [1, 2]


async def test_console_channel_prints_the_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The console shows title, facts and the reference key."""
    await ConsoleChannel().send(message(ConsoleTarget(), jobs=2))
    out = capsys.readouterr().out
    assert "stoker: 2 jobs of alice finished" in out
    assert (
        "j1: Failed, ended 2026-01-01T12:00:00+00:00, attempts 2, duration 1h02m05s, "
        "reason: CapacityError" in out
    )
    assert "ref: key-123" in out
