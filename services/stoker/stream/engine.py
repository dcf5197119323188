"""One router per process for the duplicate stream: loaded once, shared by every agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
import tenacity

from stoker.core.retry import RetryPolicy
from stoker.inference.router.errors import RouterError
from stoker.inference.router.models import ModelSet
from stoker.inference.router.policy import Priority
from stoker.inference.router.router import DUPLICATE_LABEL, Router, config_for
from stoker.ports.inference import TokenizedInput

log = structlog.get_logger("stoker.stream.engine")

MODEL = "duplicate"

OVERLOAD_RETRY = RetryPolicy(
    initial_delay_s=0.05, multiplier=2, max_delay_s=2.0, jitter=0, max_attempts=1000
)
"""A batch the router refused (queue full, deadline missed under load) is queued again after
waits doubling from 50 ms to 2 s, for about half an hour; a router refusing longer is down and
the agent crashes with the error (its uncommitted pairs are replayed)."""


class ScoringEngine:
    """The duplicate model behind the router's batcher, started on first use.

    `load` builds the model set (blocking: it reads weights), run once on a thread. The
    router is the HTTP path's own class, so the stream gets the same batching, deadlines and
    backends; with one engine per process there is one model copy per process.
    """

    def __init__(
        self,
        load: Callable[[], ModelSet],
        *,
        max_batch: int,
        max_queue_delay_ms: float,
        timeout_ms: float,
    ) -> None:
        self._load = load
        self._max_batch = max_batch
        self._max_queue_delay_ms = max_queue_delay_ms
        self._timeout_ms = timeout_ms
        self._router: Router | None = None
        self._lock = asyncio.Lock()

    async def router(self) -> Router:
        async with self._lock:
            if self._router is None:
                models = await asyncio.to_thread(self._load)
                backend = models.backends[MODEL]
                config = config_for(
                    backend,
                    max_queue_delay_ms=self._max_queue_delay_ms,
                    # A batch is queued whole; the queue must hold at least two of them.
                    queue_capacity=max(1024, 2 * self._max_batch),
                    timeout_ms=self._timeout_ms,
                )
                router = Router(
                    {MODEL: backend},
                    models.preprocessor,
                    configs={MODEL: config},
                    workers=models.workers,
                )
                await router.start()
                log.info("duplicate model ready", backend=backend.name)
                self._router = router
            return self._router

    async def close(self, timeout_s: float = 30.0) -> None:
        if self._router is not None:
            await self._router.drain(timeout_s)
            self._router = None

    async def score(self, router: Router, inputs: list[TokenizedInput]) -> list[float]:
        """The duplicate probability of each input, in order; overload is waited out."""
        if not inputs:
            return []
        column = router.labels(MODEL).index(DUPLICATE_LABEL)
        async for attempt in OVERLOAD_RETRY.retrying(before_sleep=_log_refused):
            with attempt:
                futures: list[asyncio.Future[list[float]]] = []
                try:
                    for tokens in inputs:
                        futures.append(
                            router.submit(
                                MODEL, tokens, priority=Priority.BULK, timeout_ms=self._timeout_ms
                            )
                        )
                    rows = await asyncio.gather(*futures)
                except RouterError:
                    for future in futures:
                        future.cancel()
                    raise
                return [row[column] for row in rows]
        raise AssertionError("unreachable: retrying() re-raises the last failure")


def _log_refused(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.info(
        "router refused the batch; backing off",
        reason=str(error),
        delay_s=round(state.upcoming_sleep, 3),
    )
