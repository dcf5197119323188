"""Wait for Kafka before the app starts: retries with backoff and a log line per try, and a
refused login or TLS handshake reported at once (another try cannot fix a setting)."""

from __future__ import annotations

import ssl

import structlog
import tenacity
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from stoker.core.errors import StokerError
from stoker.core.retry import RetryPolicy
from stoker.stream.security import BrokerAuth

log = structlog.get_logger("stoker.stream.broker")

BROKER_RETRY = RetryPolicy(
    initial_delay_s=0.5, multiplier=2, max_delay_s=10.0, jitter=0.1, max_attempts=60
)
"""About eight minutes of tries, waits doubling from 0.5 s to 10 s."""

_REFUSED = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, ssl.SSLError)


class BrokerUnreachable(StokerError):
    retriable = True

    def __init__(self, bootstrap: str, cause: str) -> None:
        super().__init__(f"kafka at {bootstrap} is unreachable: {cause}")


class BrokerLoginRefused(StokerError):
    """The broker refused the SASL login or the TLS handshake failed: check
    STOKER_KAFKA_SECURITY_PROTOCOL, STOKER_KAFKA_SASL_* and STOKER_KAFKA_SSL_*. Not retried."""

    retriable = False

    def __init__(self, bootstrap: str, protocol: str, cause: BaseException) -> None:
        # The causes named here carry the broker's or OpenSSL's reason, never a password.
        name, reason = type(cause).__name__, str(cause)
        why = reason if name in reason else f"{name}: {reason}"
        super().__init__(
            f"kafka at {bootstrap} refused the {protocol} connection ({why}); "
            "check the Kafka SASL and TLS settings"
        )


async def wait_for_broker(
    bootstrap: str, *, auth: BrokerAuth | None = None, policy: RetryPolicy = BROKER_RETRY
) -> None:
    """Return once a Kafka client bootstraps from `bootstrap` with `auth`; raise
    BrokerLoginRefused at once when a broker refuses the login, BrokerUnreachable after the
    policy's tries."""
    auth = auth or BrokerAuth()

    async def once() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, **auth.aiokafka())
        try:
            await client.bootstrap()
        except KafkaConnectionError as exc:
            # aiokafka reports every failed bootstrap alike; one connection says why.
            await _raise_if_refused(bootstrap, auth)
            raise BrokerUnreachable(bootstrap, str(exc)) from exc
        finally:
            await client.close()

    async for attempt in policy.retrying(before_sleep=_log_retry):
        with attempt:
            await once()


async def _raise_if_refused(bootstrap: str, auth: BrokerAuth) -> None:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(host.strip("[]"), int(port), **auth.aiokafka())
        except _REFUSED as exc:
            raise BrokerLoginRefused(bootstrap, auth.protocol, exc) from exc
        except (OSError, KafkaConnectionError):
            continue  # not listening: unreachable, retried
        conn.close()


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "kafka unreachable; retrying",
        reason=str(error),
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 2),
    )
