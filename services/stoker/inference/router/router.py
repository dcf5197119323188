"""The router: tokenize once, queue per model, batch, run, reply.

`Router.intent` and `Router.duplicates` are what the HTTP API and the duplicate stream
call. Backends are warmed (every static shape run once) before the router reports
ready, so no request pays for a compilation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from stoker.core.clock import Clock, SystemClock
from stoker.inference.router.batcher import Batcher, Job
from stoker.inference.router.errors import InvalidInput, RouterError, UnknownModel
from stoker.inference.router.metrics import RouterMetrics
from stoker.inference.router.policy import BatchingConfig, BatchPolicy, Priority
from stoker.inference.router.timing import RequestTiming
from stoker.inference.router.timing import now as stamp
from stoker.ports.inference import ModelBackend, Preprocessor, TokenizedInput

log = structlog.get_logger("stoker.router")

DUPLICATE_LABEL = "duplicate"

CHARS_PER_TOKEN = 10
"""Characters of text kept per token of the model's largest bucket before tokenizing. A
WordPiece token of English covers four to five characters with its space, so the kept
prefix holds more tokens than the bucket and the cut changes nothing the model sees; what
it bounds is the tokenizer's work, which no longer grows with the text."""


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str
    scores: dict[str, float]
    truncated: bool


@dataclass(frozen=True, slots=True)
class DuplicateResult:
    score: float
    """Probability that the two products are duplicates."""
    truncated: bool


def config_for(
    backend: ModelBackend,
    *,
    max_batch_size: int = 0,
    max_queue_delay_ms: float = 2.0,
    queue_capacity: int = 1024,
    timeout_ms: float = 1000.0,
    idle_dispatch: bool = True,
) -> BatchingConfig:
    """A batching config over exactly the static shapes the backend was compiled for."""
    return BatchingConfig(
        idle_dispatch=idle_dispatch,
        batch_sizes=tuple(backend.batch_sizes),
        seq_buckets=tuple(backend.seq_buckets),
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        queue_capacity=queue_capacity,
        timeout_ms=timeout_ms,
    )


class Router:
    """Batched inference over one preprocessor and a backend per model."""

    def __init__(
        self,
        backends: Mapping[str, ModelBackend],
        preprocessor: Preprocessor,
        *,
        configs: Mapping[str, BatchingConfig] | None = None,
        workers: int = 1,
        clock: Clock | None = None,
        metrics: RouterMetrics | None = None,
        run_on_loop_when_idle: bool = False,
    ) -> None:
        """`run_on_loop_when_idle`: see `Batcher` (real-time batches that find the router idle
        run on the event loop's thread, with no hand-off to a worker)."""
        if not backends:
            raise ValueError("a router needs at least one backend")
        self._backends = dict(backends)
        given = dict(configs or {})
        self._configs = {name: given.get(name) or config_for(b) for name, b in backends.items()}
        for name, cfg in self._configs.items():
            _check_shapes(name, cfg, self._backends[name])
        self._preprocessor = preprocessor
        self._clock = clock or SystemClock()
        self.metrics = metrics or RouterMetrics()
        self._policy: BatchPolicy[Job] = BatchPolicy(self._configs)
        self._batcher = Batcher(
            self._backends,
            preprocessor,
            self._policy,
            workers=workers,
            metrics=self.metrics,
            clock=self._clock,
            run_on_loop_when_idle=run_on_loop_when_idle,
            callers_waiting=lambda: self._callers,
        )
        # Callers between their request and their reply: a caller whose reply is set but
        # who has not resumed yet must not wait behind another query run on the loop.
        self._callers = 0
        self._warmed = False
        self.drained_completely: bool | None = None
        """Set by `drain`: None before it ran, then whether every queued request was answered."""

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._backends)

    def config(self, model: str) -> BatchingConfig:
        try:
            return self._configs[model]
        except KeyError:
            raise UnknownModel(model) from None

    def queued(self, model: str | None = None) -> int:
        """Requests waiting for a batch (one model, or all)."""
        return self._policy.queued(model)

    @property
    def ready(self) -> bool:
        """Warmed, running and not draining: safe to route traffic here."""
        return self._warmed and self._batcher.running and not self._policy.draining

    @property
    def alive(self) -> bool:
        """The batching loop has not died (a dead loop needs a restart, not traffic)."""
        return self._batcher.failure is None or self._policy.draining

    async def start(self, *, warm: bool = True) -> None:
        """Warm every (batch size, bucket) of every backend, then start batching."""
        if warm:
            for name, backend in self._backends.items():
                started = self._clock.monotonic()
                await asyncio.to_thread(backend.warm)
                log.info("model warmed", model=name, seconds=self._clock.monotonic() - started)
        self._warmed = True
        self._batcher.start()

    def begin_drain(self) -> None:
        """Stop accepting requests now (readiness goes false); queued ones still run."""
        self._policy.begin_drain()

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Refuse new requests, answer every queued one, stop. True if done within time."""
        done = await self._batcher.drain(timeout_s)
        self.drained_completely = done
        log.info("router drained", complete=done)
        return done

    def encode(
        self, model: str, text: str, pair: str | None = None, *, field: str
    ) -> TokenizedInput:
        """Tokenize for `model`, truncated to its largest bucket. Empty text is refused.

        Each text is first cut to `CHARS_PER_TOKEN` characters per token of that bucket, so
        a long text costs no more to tokenize than one that fills the bucket; a cut text
        is reported truncated."""
        if not text.strip():
            raise InvalidInput(field, "must not be empty")
        if pair is not None and not pair.strip():
            raise InvalidInput(field, "must not be empty")
        max_len = self.config(model).max_seq_len
        window = max_len * CHARS_PER_TOKEN
        cut = len(text) > window or (pair is not None and len(pair) > window)
        if cut:
            text = text[:window]
            pair = None if pair is None else pair[:window]
        tokens = self._preprocessor.encode(text, pair, max_len=max_len)
        if cut and not tokens.truncated:
            tokens = dataclasses.replace(tokens, truncated=True)
        if tokens.truncated:
            self.metrics.truncated(model)
        return tokens

    def labels(self, model: str) -> tuple[str, ...]:
        """Output columns of `model`."""
        if model not in self._backends:
            raise UnknownModel(model)
        return self._backends[model].labels

    def submit(
        self,
        model: str,
        tokens: TokenizedInput,
        *,
        priority: Priority,
        timeout_ms: float | None = None,
    ) -> asyncio.Future[list[float]]:
        """Queue tokenized input now (QueueFull / ShuttingDown raise at once); await later."""
        return self._batcher.submit(model, tokens, priority=priority, timeout_ms=timeout_ms)

    async def run(
        self,
        model: str,
        tokens: TokenizedInput,
        *,
        priority: Priority,
        timeout_ms: float | None = None,
    ) -> list[float]:
        """Queue tokenized input and wait for its probabilities."""
        self._callers += 1
        try:
            return await self._batcher.submit(
                model, tokens, priority=priority, timeout_ms=timeout_ms
            )
        finally:
            self._callers -= 1

    async def intent(
        self, query: str, *, timeout_ms: float | None = None, timing: RequestTiming | None = None
    ) -> IntentResult:
        """Classify one query (real-time priority). `timing`, when given, gets the stamps of
        the request's way through the router (tokenized, queued, run, delivered)."""
        self._callers += 1
        try:
            tokens = self.encode("intent", query, field="query")
            if timing is not None:
                timing.tokenized = stamp()
            row = await self._batcher.submit(
                "intent", tokens, priority=Priority.REALTIME, timeout_ms=timeout_ms, timing=timing
            )
        finally:
            self._callers -= 1
        labels = self._backends["intent"].labels
        best = max(range(len(row)), key=row.__getitem__)
        return IntentResult(
            intent=labels[best],
            scores=dict(zip(labels, row, strict=True)),
            truncated=tokens.truncated,
        )

    async def duplicates(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        priority: Priority = Priority.BULK,
        timeout_ms: float | None = None,
    ) -> list[DuplicateResult]:
        """Score product pairs; all are queued at once so they batch together."""
        self._callers += 1
        try:
            return await self._duplicates(pairs, priority=priority, timeout_ms=timeout_ms)
        finally:
            self._callers -= 1

    async def _duplicates(
        self, pairs: Sequence[tuple[str, str]], *, priority: Priority, timeout_ms: float | None
    ) -> list[DuplicateResult]:
        encoded = [
            self.encode("duplicate", a, b, field=f"pairs.{i}") for i, (a, b) in enumerate(pairs)
        ]
        futures: list[asyncio.Future[list[float]]] = []
        try:
            for tokens in encoded:
                futures.append(
                    self._batcher.submit(
                        "duplicate", tokens, priority=priority, timeout_ms=timeout_ms
                    )
                )
            rows = await asyncio.gather(*futures)
        except (RouterError, asyncio.CancelledError):
            # Rejected half way (queue full) or abandoned: the rest must not run for nothing.
            for future in futures:
                future.cancel()
            raise
        column = self._backends["duplicate"].labels.index(DUPLICATE_LABEL)
        return [
            DuplicateResult(score=row[column], truncated=tokens.truncated)
            for row, tokens in zip(rows, encoded, strict=True)
        ]


def _check_shapes(name: str, cfg: BatchingConfig, backend: ModelBackend) -> None:
    # A compiled model accepts only the shapes it declared; anything else would fail at run.
    extra_sizes = set(cfg.batch_sizes) - set(backend.batch_sizes)
    extra_buckets = set(cfg.seq_buckets) - set(backend.seq_buckets)
    if extra_sizes or extra_buckets:
        raise ValueError(
            f"model {name!r}: config uses shapes the backend does not accept "
            f"(batch sizes {sorted(extra_sizes)}, buckets {sorted(extra_buckets)})"
        )
