"""Email through SNS, against moto server (the real SNS wire protocol), checked through
SQS queues subscribed with per-recipient filter policies, as an operator would set up
email subscriptions."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from stoker.adapters.notifier.sns import SnsEmailChannel
from stoker.core.job import JobStatus
from stoker.core.notification import JobNote, Notification
from stoker.core.spec import EmailTarget
from stoker.devinfra import free_ports
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected
from tests.support.waiting import poll_until, wait_until_blocking
from tests.unit.notifier.support import T0

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on a free loopback port, stopped after the module; dummy credentials
    for the module's clients (restored afterwards, so other modules see what they set)."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(name, os.environ.get(name, "stokerlocal"))
        yield from _moto_server(tmp_path_factory)


def _moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    [port] = free_ports(1)
    log = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
        )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_until_blocking(
            lambda: proc.poll() is not None or listening(), 30, 0.05, what="moto listening"
        )
        assert proc.poll() is None, f"moto server did not start: {log.read_text()}"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[tuple[Any, Any]]:
    """SNS and SQS clients on the moto server."""
    async with AsyncExitStack() as stack:
        session = get_session()
        kwargs = {"region_name": REGION, "endpoint_url": moto_endpoint}
        sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
        sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
        yield sns, sqs


async def _queue_for(sns: Any, sqs: Any, topic_arn: str, name: str, recipient: str) -> str:
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    await sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=attrs["Attributes"]["QueueArn"],
        Attributes={"FilterPolicy": json.dumps({"recipient": [recipient]})},
    )
    return str(url)


def _message(address: str) -> Notification:
    note = JobNote(
        job_id="em1",
        owner="alice",
        state=JobStatus.FAILED,
        attempts=3,
        reason="AlgorithmError: loss is NaN",
        ended_at=T0,
        duration_s=75.0,
    )
    return Notification("em1:failed:abc", "alice", EmailTarget(address=address), (note,))


async def test_email_is_published_to_the_topic_for_its_recipient_only(
    aws: tuple[Any, Any], moto_endpoint: str
) -> None:
    """One publish; alice's filtered subscription gets it with subject, text and key, bob's not."""
    sns, sqs = aws
    topic_arn = (await sns.create_topic(Name="stoker-notify-test"))["TopicArn"]
    alice_q = await _queue_for(sns, sqs, topic_arn, "alice-mail", "alice@example.com")
    bob_q = await _queue_for(sns, sqs, topic_arn, "bob-mail", "bob@example.com")
    channel = SnsEmailChannel(topic_arn, region=REGION, endpoint_url=moto_endpoint)
    try:
        await channel.send(_message("alice@example.com"))
    finally:
        await channel.close()

    received: list[dict[str, Any]] = []

    async def arrived() -> bool:
        answer = await sqs.receive_message(QueueUrl=alice_q, WaitTimeSeconds=1)
        received.extend(answer.get("Messages", []))
        return bool(received)

    await poll_until(arrived, timeout_s=10, interval_s=0, what="alice's message")
    [raw] = received
    envelope = json.loads(raw["Body"])
    assert envelope["Subject"] == "stoker: job em1 Failed"
    assert (
        "em1: Failed, ended 2026-01-01T12:00:00+00:00, attempts 3, duration 1m15s"
        in (envelope["Message"])
    )
    assert "AlgorithmError: loss is NaN" in envelope["Message"]
    assert envelope["MessageAttributes"]["idempotency_key"]["Value"] == "em1:failed:abc"
    assert envelope["MessageAttributes"]["recipient"]["Value"] == "alice@example.com"
    other = await sqs.receive_message(QueueUrl=bob_q, WaitTimeSeconds=0)
    assert other.get("Messages", []) == []


async def test_publishing_to_a_missing_topic_is_rejected_for_good(moto_endpoint: str) -> None:
    """NotFound is not worth retrying: the channel raises DeliveryRejected naming SNS."""
    arn = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    channel = SnsEmailChannel(arn, region=REGION, endpoint_url=moto_endpoint)
    try:
        with pytest.raises(DeliveryRejected, match="sns publish") as caught:
            await channel.send(_message("alice@example.com"))
    finally:
        await channel.close()
    assert "a…@example.com" in str(caught.value)


async def test_an_unreachable_endpoint_is_deferred_not_rejected(moto_endpoint: str) -> None:
    """Nothing listening: a retriable DeliveryDeferred, so the sender tries again later."""
    arn = f"arn:aws:sns:{REGION}:123456789012:t"
    channel = SnsEmailChannel(
        arn, region=REGION, endpoint_url=f"http://127.0.0.1:{free_ports(1)[0]}"
    )
    try:
        with pytest.raises(DeliveryDeferred):
            await asyncio.wait_for(channel.send(_message("alice@example.com")), 60)
    finally:
        await channel.close()
