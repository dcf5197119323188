"""The duplicate stream as a Faust app: pairs in, one score per pair out, exactly once.

    pairs topic ──take_events(max_batch, within)──▶ parse ──▶ scores table hit? ──▶ router
         │                                            │ bad record            (batched model)
         │                                            ▼                            │
         │                                      dead-letter topic   scores topic ◀─┘
         └── offsets, scores, dead letters, table and window updates: one Kafka
             transaction per source partition, committed between batches (`Commits`).

Build one with `build_app`; `stoker.stream.main.app` (what `faust -A stoker.stream.main`
loads) is the one built from STOKER_* settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import faust
import structlog
from faust.types import StreamT

from stoker.adapters.bus.kafka.config import KafkaSecurity
from stoker.core.clock import Clock, SystemClock
from stoker.inference.router.models import ModelSet
from stoker.ports.auth import Authenticator
from stoker.ports.resource import Resource
from stoker.stream.batch import handle_batch
from stoker.stream.broker import wait_for_broker
from stoker.stream.commits import Commits
from stoker.stream.config import StreamSettings
from stoker.stream.engine import ScoringEngine
from stoker.stream.gaps import GapProbe, KafkaGapProbe
from stoker.stream.publish import Outputs, TransactionalOutputs
from stoker.stream.security import BrokerAuth, broker_auth
from stoker.stream.state import DuplicateApp
from stoker.stream.tables import SourcePartitionTable
from stoker.stream.views import register_views

log = structlog.get_logger("stoker.stream")

NEVER_S = 10.0 * 365 * 86_400
"""Faust's own periodic commit: effectively never (the agent commits, see `Commits`)."""


class StreamApp(faust.App):
    """A Faust app that waits for its broker (with backoff and a log line per try) and opens
    its resources (the token store of the web views) before Faust starts its clients."""

    stoker_bootstrap: str = ""
    stoker_auth: BrokerAuth = BrokerAuth()
    stoker_resources: tuple[Resource, ...] = ()
    stoker_max_batch: int = 100
    stoker_commits: Commits | None = None

    async def on_first_start(self) -> None:
        await wait_for_broker(self.stoker_bootstrap, auth=self.stoker_auth)
        for resource in self.stoker_resources:
            await resource.start()
        # Faust holds the stream back while more than this many table updates wait to be
        # sent; a batch writes one per scored pair, so the default (100) stalls every batch.
        self.producer.buffer.max_messages = max(100, 4 * self.stoker_max_batch)
        await super().on_first_start()

    async def on_stop(self) -> None:
        # Before Faust stops its consumer, agent and producers: the batch in hand is
        # finished and committed, and no other one is started.
        if self.stoker_commits is not None:
            await self.stoker_commits.on_stop()
        await super().on_stop()


def build_app(
    settings: StreamSettings,
    load_models: Callable[[], ModelSet],
    *,
    broker: str,
    authenticator: Authenticator | None,
    security: KafkaSecurity | None = None,
    resources: tuple[Resource, ...] = (),
    outputs: Callable[[faust.App], Outputs] = TransactionalOutputs,
    clock: Clock | None = None,
    gap_probe: GapProbe | None = None,
    store: str = "memory://",
    **faust_options: Any,
) -> DuplicateApp:
    """The app on Kafka at `broker` (host:port[,host:port]), logged in as `security` says
    (None: PLAINTEXT). `authenticator` guards the web views (None: they answer 401 to
    everyone); `resources` are started with the app."""
    clock = clock or SystemClock()
    auth = broker_auth(security)
    app = StreamApp(
        settings.app_id,
        broker=f"kafka://{broker}",
        store=store,
        processing_guarantee="exactly_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=faust_options.pop("replication", 1),
        # Commits are the agent's (see `Commits`); Faust's own timer would take one in
        # the middle of a batch.
        broker_commit_interval=NEVER_S,
        broker_commit_every=1_000_000_000,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
        # A standby copy recovered from a changelog that is still in a transaction is refused
        # by Faust's recovery (its offset is past the committed end); partitions that move
        # are recovered from their changelog instead.
        table_standby_replicas=0,
        # Under exactly_once Faust takes a changelog's end from the consumer's last stable
        # offset, which is -1 until that partition was fetched once, and then refuses every
        # recovery of a partition it held before ("persisted offset is higher than the
        # highwater"). The memory store persists nothing, so there is nothing to check.
        recovery_consistency_check=False,
        # Transactional ids carry the number of the partition's co-partitioned topic group,
        # and Faust numbers the groups in set order, which differs between processes. With
        # the leader topic (a second group, unused here) a partition's id could change at a
        # rebalance, so the new owner's producer would not fence the old one's transaction.
        # One group keeps every id stable.
        topic_disable_leader=True,
        Table=SourcePartitionTable,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        **auth.faust_options(),
        **faust_options,
    )
    app.stoker_bootstrap = broker
    app.stoker_auth = auth
    app.stoker_resources = resources
    app.stoker_max_batch = settings.max_batch
    pairs_topic = app.topic(
        settings.pairs_topic,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        # Faust acknowledges more than the agent handled (see `Commits`): the agent commits
        # the offsets of this topic itself.
        acks=False,
    )
    scores = app.Table(
        "scores",
        default=None,
        key_type=bytes,  # bytes keys and values: Faust's "raw" codec
        value_type=bytes,
        partitions=settings.partitions,
        help="pair id -> the score of its last content",
        extra_topic_configs={
            "cleanup.policy": "compact,delete",
            "retention.ms": int(settings.score_retention_s * 1000),
        },
    )
    window = timedelta(seconds=settings.window_s)
    expires = timedelta(seconds=settings.window_expires_s)
    pairs_per_window = (
        app.Table("pairs-per-window", default=int, partitions=settings.partitions)
        .tumbling(window, expires=expires)
        .relative_to_now()
    )
    duplicates_per_window = (
        app.Table("duplicates-per-window", default=int, partitions=settings.partitions)
        .tumbling(window, expires=expires)
        .relative_to_now()
    )
    engine = ScoringEngine(
        load_models,
        max_batch=settings.max_batch,
        max_queue_delay_ms=settings.max_queue_delay_ms,
        timeout_ms=settings.timeout_ms,
    )
    built = DuplicateApp(app, settings, engine, scores, pairs_per_window, duplicates_per_window)
    sink = outputs(app)

    # The agent commits (see `Commits`): after a batch once `commit_interval_s` has passed,
    # by the timer below when the stream is idle, on a rebalance and on a stop.
    commits = Commits(
        app, clock, settings.commit_interval_s, gap_probe or KafkaGapProbe(broker, auth)
    )
    app.stoker_commits = commits

    async def score_pairs(stream: StreamT[Any]) -> AsyncIterator[int]:
        router = await engine.router()
        # take_events is take() with the events (their partitions and offsets) handed over.
        assert isinstance(stream, faust.Stream)
        async for events in stream.take_events(settings.max_batch, within=settings.within_s):
            async with commits.lock:
                if commits.stopping:
                    continue  # after the last commit: left for the partitions' next owner
                current = await commits.fresh(events)
                acks = await handle_batch(built, sink, router, current, clock)
                if app.in_transaction:
                    # The window updates sit in Faust's send buffer: into the transactional
                    # producers before the commit (which then waits for their delivery).
                    await app.producer.buffer.flush()
                commits.handled(current, acks)
                if commits.due:
                    await commits.commit()
            yield len(events)

    async def commit_when_idle() -> None:
        async with commits.lock:
            await commits.commit()

    app.timer(settings.commit_interval_s, name="commit-when-idle")(commit_when_idle)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        (revoked,) = args  # the signal's argument: the revoked topic partitions
        await commits.on_revoked(revoked)

    built.agent = app.agent(pairs_topic, name="score-pairs")(score_pairs)
    register_views(built, authenticator)
    return built
