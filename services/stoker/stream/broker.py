"""Wait for Kafka before the app starts: retries with backoff and a log line per try."""

from __future__ import annotations

import structlog
import tenacity
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

from stoker.core.errors import StokerError
from stoker.core.retry import RetryPolicy

log = structlog.get_logger("stoker.stream.broker")

BROKER_RETRY = RetryPolicy(
    initial_delay_s=0.5, multiplier=2, max_delay_s=10.0, jitter=0.1, max_attempts=60
)
"""About eight minutes of tries, waits doubling from 0.5 s to 10 s."""


class BrokerUnreachable(StokerError):
    retriable = True

    def __init__(self, bootstrap: str, cause: str) -> None:
        super().__init__(f"kafka at {bootstrap} is unreachable: {cause}")


async def wait_for_broker(bootstrap: str, policy: RetryPolicy = BROKER_RETRY) -> None:
    """Return once a Kafka client bootstraps from `bootstrap`; raise BrokerUnreachable after
    the policy's tries."""

    async def once() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap)
        try:
            await client.bootstrap()
        except KafkaConnectionError as exc:
            raise BrokerUnreachable(bootstrap, str(exc)) from exc
        finally:
            await client.close()

    async for attempt in policy.retrying(before_sleep=_log_retry):
        with attempt:
            await once()


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "kafka unreachable; retrying",
        reason=str(error),
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 2),
    )
