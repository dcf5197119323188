"""Calls to a broker that may not answer yet: tried again with the config's `broker_retry`
within `connect_timeout_s`, one log line per failed try. Errors come out translated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
import tenacity
from confluent_kafka import KafkaException

from stoker.adapters.bus.kafka.config import KafkaConfig
from stoker.adapters.bus.kafka.errors import KafkaUnavailable, translate
from stoker.core.errors import InfrastructureUnavailable

log = structlog.get_logger("stoker.adapters.bus.kafka")

T = TypeVar("T")

Probe = Callable[[float], Awaitable[object]]
"""Asks a client for the brokers' metadata, waiting at most the given seconds; raises
KafkaException when they do not answer."""


async def wait_reachable(what: str, probe: Probe, config: KafkaConfig) -> None:
    """`probe` until the brokers answer. Each try waits a little longer for the answer.
    InfrastructureUnavailable naming the brokers after `connect_timeout_s`; an error that is
    not retriable (a refused login) comes out at once."""
    end = time.monotonic() + config.connect_timeout_s
    tries = 0
    retrying = config.broker_retry.retrying(
        deadline_s=config.connect_timeout_s,
        sleep=_sleep_until(end),
        before_sleep=_log_retry(
            "kafka unreachable; retrying", client=what, bootstrap=config.bootstrap
        ),
    )
    try:
        async for attempt in retrying:
            with attempt:
                tries = attempt.retry_state.attempt_number
                wait_s = max(0.1, min(0.2 * tries, 5.0, end - time.monotonic()))
                try:
                    await probe(wait_s)
                except KafkaException as exc:
                    raise translate(exc, f"{what} metadata") from exc
    except KafkaUnavailable as exc:
        raise InfrastructureUnavailable(
            f"kafka {what}: broker {config.bootstrap} unreachable after {tries} attempts"
            f" in {config.connect_timeout_s:.0f} s: {exc}"
        ) from exc
    if tries > 1:
        log.info("kafka reachable", client=what, attempts=tries)


async def retry_transient(
    call: Callable[[], T],
    doing: str,
    config: KafkaConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call()` on a worker thread, tried again while it fails with a retriable error (a
    librdkafka one, translated here, or a stoker one it raised), within `connect_timeout_s`.
    Only for calls that may be repeated (creating topics that may exist already)."""
    retrying = config.broker_retry.retrying(
        deadline_s=config.connect_timeout_s,
        sleep=_sleep_until(time.monotonic() + config.connect_timeout_s, sleep),
        before_sleep=_log_retry("kafka request failed; retrying", doing=doing),
    )
    async for attempt in retrying:
        with attempt:
            try:
                return await asyncio.to_thread(call)
            except KafkaException as exc:
                raise translate(exc, doing) from exc
    raise AssertionError("retrying re-raises the last error")  # pragma: no cover


def _sleep_until(
    end: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> Callable[[float], Awaitable[None]]:
    """`sleep`, cut short at `end` (monotonic seconds): the last try comes at the deadline."""

    async def capped(seconds: float) -> None:
        await sleep(max(0.0, min(seconds, end - time.monotonic())))

    return capped


def _log_retry(event: str, **bound: str) -> Callable[[tenacity.RetryCallState], None]:
    def logged(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            event,
            attempt=state.attempt_number,
            retry_in_s=round(wait_s, 2),
            error=str(error),
            **bound,
        )

    return logged
