"""One batch of the agent: parse, serve repeats from the table, score the rest, send."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from faust.types import EventT

from stoker.core.clock import Clock
from stoker.inference.pairs import DuplicatePair
from stoker.inference.router.errors import InvalidInput
from stoker.inference.router.router import Router
from stoker.ports.bus import BusRecord
from stoker.ports.inference import TokenizedInput
from stoker.stream.engine import MODEL
from stoker.stream.publish import Outputs
from stoker.stream.records import (
    Rejected,
    StoredScore,
    content_digest,
    dead_letter,
    parse_pair,
    product_type,
    score_event,
)
from stoker.stream.state import DuplicateApp
from stoker.stream.tables import writing_for

log = structlog.get_logger("stoker.stream")


@dataclass(slots=True)
class Scored:
    """A valid pair and its score (from the table when `served`)."""

    record: BusRecord
    pair: DuplicatePair
    stored: StoredScore
    served: bool


@dataclass(slots=True)
class _ToScore:
    record: BusRecord
    pair: DuplicatePair
    digest: str
    tokens: TokenizedInput


Handled = Scored | tuple[BusRecord, Rejected]


def bus_record(event: EventT[Any]) -> BusRecord:
    message = event.message
    key = message.key
    return BusRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else "",
        value=event.value if isinstance(event.value, bytes) else b"",
    )


async def handle_batch(
    built: DuplicateApp, sink: Outputs, router: Router, events: list[EventT[Any]], clock: Clock
) -> list[Awaitable[object]]:
    """Score one batch and send its scores, dead letters and table updates (uncommitted),
    in the order of the batch. Returns the sends' acknowledgements."""
    handled = await score_batch(built, router, [bus_record(e) for e in events])
    return await send_batch(built, sink, handled, clock.now())


async def score_batch(
    built: DuplicateApp, router: Router, records: list[BusRecord]
) -> list[Handled]:
    handled: list[Handled | _ToScore] = []
    for record in records:
        parsed = parse_pair(record.value if record.value else None)
        if isinstance(parsed, Rejected):
            handled.append((record, parsed))
            continue
        digest = content_digest(parsed)
        stored = StoredScore.from_bytes(built.scores.data.get(parsed.pair_id.encode()))
        if stored is not None and stored.digest == digest:
            handled.append(Scored(record, parsed, stored, served=True))
            continue
        try:
            tokens = router.encode(MODEL, parsed.a.as_text(), parsed.b.as_text(), field="a")
        except InvalidInput as exc:
            handled.append((record, Rejected("schema", f"schema: {exc}")))
            continue
        handled.append(_ToScore(record, parsed, digest, tokens))
    pending = [h for h in handled if isinstance(h, _ToScore)]
    scores = iter(await built.engine.score(router, [p.tokens for p in pending]))
    return [
        Scored(h.record, h.pair, StoredScore(h.digest, next(scores), h.tokens.truncated), False)
        if isinstance(h, _ToScore)
        else h
        for h in handled
    ]


async def send_batch(
    built: DuplicateApp, sink: Outputs, handled: list[Handled], now: datetime
) -> list[Awaitable[object]]:
    settings = built.settings
    acks: list[Awaitable[object]] = []
    # Window counts are added once per batch and key: a changelog record per key, not per pair.
    pairs_in: Counter[tuple[int, str]] = Counter()
    duplicates_in: Counter[tuple[int, str]] = Counter()
    changelog = built.scores.changelog_topic.get_topic_name()
    for item in handled:
        if not isinstance(item, Scored):
            acks.append(await _dead_letter(built, sink, *item, now))
            continue
        record, source = item.record, (item.record.topic, item.record.partition)
        event = score_event(item.pair, item.stored, model=MODEL, at=now)
        key = item.pair.pair_id.encode()
        acks.append(await sink.send(settings.scores_topic, key, event.to_json(), source=source))
        window = (record.partition, f"{product_type(item.pair)}@{record.partition}")
        pairs_in[window] += 1
        duplicates_in[window] += item.stored.score >= settings.duplicate_threshold
        if item.served:
            built.counters.served_from_table += 1
            continue
        # One changelog record per scored pair, written straight into the store and sent with
        # the pair's other outputs (through Faust's per-record send buffer it took about four
        # times as long as the scoring). Recovery reads it back like any table update.
        value = item.stored.to_bytes()
        built.scores.data[key] = value
        acks.append(
            await sink.send(changelog, key, value, source=source, partition=record.partition)
        )
        built.counters.scored += 1
    for (partition, key_), count in pairs_in.items():
        with writing_for(partition):
            built.pairs_per_window[key_] += count
            if duplicates_in[(partition, key_)]:
                built.duplicates_per_window[key_] += duplicates_in[(partition, key_)]
    return acks


async def _dead_letter(
    built: DuplicateApp, sink: Outputs, record: BusRecord, rejected: Rejected, now: datetime
) -> Awaitable[object]:
    letter = dead_letter(record, rejected, group=built.settings.app_id, at=now)
    log.warning(
        "pair dead-lettered",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=rejected.reason,
    )
    built.counters.dead_lettered += 1
    return await sink.send(
        built.settings.dead_letter_topic,
        (letter.subject or record.key or "").encode(),
        letter.to_json(),
        source=(record.topic, record.partition),
    )
