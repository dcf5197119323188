"""Readiness probes that ask the servers a real question. confluent-kafka (librdkafka) and
botocore errors are translated here into InfrastructureUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import tenacity

from stoker.core.errors import InfrastructureUnavailable
from stoker.core.retry import RetryPolicy

# DynamoDB Local accepts any credentials made of letters and digits (2.x rejects others);
# these only satisfy the client's signer.
LOCAL_ACCESS_KEY = "stokerlocal"
LOCAL_REGION = "us-east-1"
READY_POLL_S = 0.25
LIBRDKAFKA_LOGGER = "stoker.devinfra.librdkafka"
"""The probes' librdkafka log lines (refused connections and the like), at debug level."""


async def tcp_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """A listening socket: cheap, and spares the Kafka client its connection-error logs."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def kafka_broker_ids(bootstrap: str, timeout_s: float = 5.0) -> list[int]:
    """Ids of the brokers a metadata request reports (registered and unfenced)."""
    return await asyncio.to_thread(_broker_ids, bootstrap, timeout_s)


async def kafka_node_answers(address: str, timeout_s: float = 3.0) -> bool:
    """Whether this one node answers a metadata request (the client is given only this
    address, so its first connection, which carries the request, is to this node)."""
    host, _, port = address.rpartition(":")
    # librdkafka retries a refused connection until the timeout; a closed port is a quick no.
    if not await tcp_open(host, int(port), min(timeout_s, 1.0)):
        return False
    try:
        await kafka_broker_ids(address, timeout_s)
    except InfrastructureUnavailable:
        return False
    return True


class _AsDebug(logging.LoggerAdapter[logging.Logger]):
    """Refused connections are expected while a broker starts and the probes report the
    outcome themselves, so librdkafka's lines about them (errors to it) are diagnostics."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


def _broker_ids(bootstrap: str, timeout_s: float) -> list[int]:
    """Blocking: one metadata request through a short-lived admin client."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "client.id": "stoker-probe"},
        logger=_AsDebug(logging.getLogger(LIBRDKAFKA_LOGGER)),
    )
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise InfrastructureUnavailable(f"Kafka at {bootstrap} did not answer: {exc!r}") from exc
    finally:
        # With a logger set, librdkafka holds its log lines until the client is polled.
        admin.poll(0)
    return sorted(int(node_id) for node_id in metadata.brokers)


async def dynamodb_list_tables(endpoint: str, timeout_s: float = 5.0) -> list[str]:
    """ListTables against the endpoint: the server parsed and answered a real API call."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    config = AioConfig(
        connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1}
    )
    session = get_session()
    try:
        async with session.create_client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=LOCAL_REGION,
            config=config,
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_ACCESS_KEY,
        ) as client:
            response = await asyncio.wait_for(client.list_tables(Limit=100), timeout_s)
    except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
        raise InfrastructureUnavailable(
            f"DynamoDB Local at {endpoint} did not answer: {exc!r}"
        ) from exc
    return list(response.get("TableNames", []))


def until_answering(timeout_s: float) -> tenacity.AsyncRetrying:
    """Attempts every READY_POLL_S (after the probe's own time) while they fail with a
    retriable error, until `timeout_s` has passed; the last error is raised then.

        async for attempt in until_answering(60):
            with attempt:
                await probe()
    """
    policy = RetryPolicy(
        initial_delay_s=READY_POLL_S,
        multiplier=1.0,
        max_delay_s=READY_POLL_S,
        jitter=0.0,
        # Every attempt waits READY_POLL_S at least, so the deadline stops the loop first.
        max_attempts=int(timeout_s / READY_POLL_S) + 1,
    )
    return policy.retrying(deadline_s=timeout_s)


async def wait_for_dynamodb(endpoint: str, timeout_s: float) -> None:
    """Ask ListTables until it succeeds, for servers this package did not start (containers)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        async for attempt in until_answering(timeout_s):
            with attempt:
                remaining = deadline - asyncio.get_running_loop().time()
                await dynamodb_list_tables(endpoint, timeout_s=probe_timeout_s(remaining))
    except InfrastructureUnavailable as exc:
        raise InfrastructureUnavailable(
            f"DynamoDB Local at {endpoint} did not answer within {timeout_s:.0f} s"
        ) from exc


def probe_timeout_s(remaining_s: float) -> float:
    """How long one readiness probe may take: what is left of the wait, within 1..5 s."""
    return max(1.0, min(5.0, remaining_s))
