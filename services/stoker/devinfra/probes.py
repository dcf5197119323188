"""Readiness probes that ask the servers a real question. aiokafka and botocore errors are
translated here into InfrastructureUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import time

from stoker.core.errors import InfrastructureUnavailable

# DynamoDB Local accepts any credentials made of letters and digits (2.x rejects others);
# these only satisfy the client's signer.
LOCAL_ACCESS_KEY = "stokerlocal"
LOCAL_REGION = "us-east-1"
POLL_S = 0.25


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
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    timeout_ms = max(1000, int(timeout_s * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise InfrastructureUnavailable(f"Kafka at {bootstrap} did not answer: {exc!r}") from exc
    finally:
        await admin.close()
    return sorted(int(broker["node_id"]) for broker in cluster["brokers"])


async def kafka_node_answers(address: str, timeout_s: float = 3.0) -> bool:
    """Whether this one node answers a metadata request (the client's bootstrap is exactly
    that request, sent to the given address only)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    timeout_ms = max(1000, int(timeout_s * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    return True


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


async def wait_for_dynamodb(endpoint: str, timeout_s: float) -> None:
    """Poll ListTables until it succeeds, for servers this package did not start (containers)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            await dynamodb_list_tables(endpoint, timeout_s=max(1.0, min(5.0, remaining)))
        except InfrastructureUnavailable as exc:
            if time.monotonic() >= deadline:
                raise InfrastructureUnavailable(
                    f"DynamoDB Local at {endpoint} did not answer within {timeout_s:.0f} s"
                ) from exc
            await asyncio.sleep(POLL_S)
        else:
            return
