"""Kafka unreachable at start: retries with backoff and a log line per try, then a clear
error naming the broker."""

from __future__ import annotations

import pytest
import structlog

from stoker.core.retry import RetryPolicy
from stoker.devinfra.procs import free_ports
from stoker.stream.broker import BrokerUnreachable, wait_for_broker


async def test_an_unreachable_broker_is_retried_then_named_in_the_error() -> None:
    (port,) = free_ports(1)  # nothing listens there
    policy = RetryPolicy(
        initial_delay_s=0.01, multiplier=2, max_delay_s=0.02, jitter=0, max_attempts=3
    )
    with structlog.testing.capture_logs() as logs, pytest.raises(BrokerUnreachable) as err:
        await wait_for_broker(f"127.0.0.1:{port}", policy=policy)
    assert f"kafka at 127.0.0.1:{port} is unreachable" in str(err.value)
    retries = [e for e in logs if e["event"] == "kafka unreachable; retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
