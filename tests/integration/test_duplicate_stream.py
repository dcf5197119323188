"""Streaming duplicate detection on a real Kafka broker.

The scorer runs the model named by STOKER_TEST_STREAM_BACKEND. By default that is a small
deterministic model with a fixed compute time per batch (`slow_model_set`), so the test
takes seconds; `STOKER_TEST_STREAM_BACKEND=cpu` runs the registry's CPU model (trained
heads needed under STOKER_DATA_DIR/models; about 20 s of warm-up per process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from stoker.adapters.bus.kafka import KafkaBus
from stoker.app.inference_registry import load_models
from stoker.cli.router import build_router
from stoker.inference.stream.processor import DuplicateStream, StreamConfig, parse_scores
from tests.support.events import TopicReader
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKEND = os.environ.get("STOKER_TEST_STREAM_BACKEND", "tests.unit.router.fakes:slow_model_set")


def pair(i: int) -> bytes:
    kinds = ("kettle", "toaster", "blender", "hammer", "drill", "lamp", "desk", "chair")
    return orjson.dumps(
        {
            "pair_id": f"pair-{i}",
            "a": {"title": f"{kinds[i % 8]} model {i}", "product_type": kinds[i % 8]},
            "b": {"title": f"{kinds[(i * 3) % 8]} model {i // 2}", "description": "steel"},
        }
    )


class Topics:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.pairs = f"test.pairs.{suffix}"
        self.scores = f"test.scores.{suffix}"
        self.dead = f"test.dead.{suffix}"
        self.group = f"test-scorers-{suffix}"


@pytest.fixture
async def bus(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    b = KafkaBus(kafka_bootstrap, partitions=4, replication=1)
    await b.start()
    yield b
    await b.close()


async def test_n_pairs_in_n_scores_out_and_bad_pairs_dead_lettered(bus: KafkaBus) -> None:
    """N valid pairs give N scores keyed by pair id; malformed records go to dead letter."""
    t = Topics()
    await bus.ensure_topics([t.pairs, t.scores, t.dead])
    n = 120
    for i in range(n):
        await bus.publish_raw(t.pairs, f"k{i}", pair(i))
    await bus.publish_raw(t.pairs, "bad1", b"{oops")
    await bus.publish_raw(t.pairs, "bad2", orjson.dumps({"pair_id": "x", "a": {"title": "t"}}))
    models = load_models(BACKEND, models=("duplicate",))

    router = build_router(models, max_queue_delay_ms=5)
    await router.start()
    config = StreamConfig(
        group=t.group, pairs_topic=t.pairs, scores_topic=t.scores, dead_letter_topic=t.dead
    )
    stream = DuplicateStream(bus, router, config)
    stop = asyncio.Event()
    task = asyncio.ensure_future(stream.run(stop))
    try:
        await wait_until(
            lambda: stream.scored + stream.dead_lettered >= n + 2,
            timeout_s=60,
            interval_s=0.05,
            what="every pair scored or dead-lettered",
        )
    finally:
        stop.set()
        await task
        await router.drain(10)
    async with TopicReader(bus, t.scores) as scores:
        await scores.read_until(lambda: len(scores.records) >= n, 30)
    assert len(scores.records) == n
    assert set(parse_scores(scores.records)) == {f"pair-{i}" for i in range(n)}
    assert all(r.key.startswith("pair-") for r in scores.records)
    async with TopicReader(bus, t.dead) as dead:
        await dead.read_until(lambda: len(dead.records) >= 2, 30)
    kinds = sorted(orjson.loads(r.value)["data"]["error_kind"] for r in dead.records)
    assert kinds == ["decode", "schema"]


def _spawn(t: Topics, bootstrap: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STOKER_MODE": "kafka",
        "STOKER_KAFKA_BOOTSTRAP": bootstrap,
        "STOKER_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "stoker.cli.router", "stream",
            "--backend", BACKEND,
            "--group", t.group,
            "--pairs-topic", t.pairs,
            "--scores-topic", t.scores,
            "--dead-letter-topic", t.dead,
            "--max-batch", "64",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_consumer_killed_mid_batch_every_pair_still_scored(
    bus: KafkaBus, kafka_bootstrap: str
) -> None:
    """After SIGKILL of a scorer mid-stream, a new one scores what was not committed:
    every pair id ends up with a score (replays allowed, de-duplicated by pair id)."""
    t = Topics()
    await bus.ensure_topics([t.pairs, t.scores, t.dead])
    n = 1500
    for i in range(n):
        await bus.publish_raw(t.pairs, f"k{i}", pair(i))
    async with TopicReader(bus, t.scores) as scores:
        first = _spawn(t, kafka_bootstrap)
        try:
            await scores.read_until(lambda: len(scores.records) > 0, 90)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
        assert first.returncode == -signal.SIGKILL
        at_kill = len(parse_scores(scores.records))
        second = _spawn(t, kafka_bootstrap)
        try:
            await scores.read_until(lambda: len(parse_scores(scores.records)) >= n, 120)
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    assert 0 < at_kill < n, "the first scorer was killed part way through the stream"
    assert set(parse_scores(scores.records)) == {f"pair-{i}" for i in range(n)}
