"""The duplicate stream's Faust app on a real Kafka broker: exactly once under SIGKILL, two
workers with a rebalance mid-stream, repeats served from the scores table, window counts,
dead letters.

The workers run `stoker router stream` with a small deterministic model of a fixed compute
time per batch (`tests.unit.router.fakes:stream_model_set`), so the tests take seconds of
scoring; their view tokens come from an embedded store in a temporary folder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from stoker.app.local_token import prepare_local_token
from stoker.devinfra.procs import free_ports
from stoker.settings import load_settings
from tests.support.processes import kill_when
from tests.support.stream import CommittedScores, StreamTopics, Worker, pair, stream_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stream_home(tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment every worker child inherits."""
    for name, value in stream_env(tmp_path / "data", kafka_bootstrap).items():
        monkeypatch.setenv(name, value)
    return tmp_path


@pytest.fixture
async def topics(kafka_bootstrap: str, stream_home: Path) -> StreamTopics:
    t = StreamTopics(kafka_bootstrap)
    await t.create()
    return t


async def test_each_pair_scored_exactly_once_after_a_worker_is_sigkilled(
    topics: StreamTopics, stream_home: Path
) -> None:
    """10,000 pairs; the first worker is SIGKILLed mid-stream, a second one finishes: a
    read_committed consumer sees exactly one score per pair id."""
    n = 10_000
    await topics.send_pairs([pair(i) for i in range(n)])
    async with CommittedScores(topics.bootstrap, topics.scores).running() as scores:
        await kill_when(
            "stoker.cli.router",
            topics.worker_args(free_ports(1)[0]),
            lambda: scores.total >= n // 5,
            stream_home / "first.log",
            what="a fifth of the scores committed",
        )
        at_kill = scores.total
        second = Worker(topics, stream_home / "second.log")
        try:
            await wait_until(
                lambda: len(scores.counts) >= n or second.process.poll() is not None,
                120,
                interval_s=0.1,
                what="every pair scored",
            )
        finally:
            assert second.stop() == 0, second.output()
    assert 0 < at_kill < n, "the first worker was killed part way through the stream"
    assert set(scores.counts) == {f"pair-{i}" for i in range(n)}
    assert [k for k, c in scores.counts.items() if c != 1] == []
    assert scores.wrong_keys == []


async def test_two_workers_rebalance_mid_stream_and_every_pair_is_scored_once(
    topics: StreamTopics, stream_home: Path
) -> None:
    """A second worker joins while pairs keep arriving and the first is scoring: the
    partitions are shared, each pair id still has exactly one committed score, and both
    workers scored some."""
    token = (await prepare_local_token(load_settings())).token
    sent = 2_000
    await topics.send_pairs([pair(i) for i in range(sent)])
    async with CommittedScores(topics.bootstrap, topics.scores).running() as scores:
        first = Worker(topics, stream_home / "first.log")
        second: Worker | None = None
        try:
            await wait_until(lambda: scores.total > 0, 60, interval_s=0.1, what="first scores")
            second = Worker(topics, stream_home / "second.log")
            await _get_when_up(second, "/duplicates/metrics", token)
            async with asyncio.timeout(120):
                # Pairs keep coming while the group rebalances, until the second worker has
                # partitions and scores some of them.
                while await _scored(second, token) == 0:
                    await topics.send_pairs([pair(i) for i in range(sent, sent + 100)])
                    sent += 100
                    await asyncio.sleep(0.2)  # paces the producer, not a wait for a condition
            await topics.send_pairs([pair(i) for i in range(sent, sent + 3_000)])
            sent += 3_000
            await wait_until(
                lambda: len(scores.counts) >= sent, 120, interval_s=0.1, what="every pair scored"
            )
            scored = [await _scored(w, token) for w in (first, second)]
        finally:
            codes = [w.stop() for w in (first, second) if w is not None]
    assert codes == [0, 0]
    assert all(s > 0 for s in scored), scored
    assert set(scores.counts) == {f"pair-{i}" for i in range(sent)}
    assert [k for k, c in scores.counts.items() if c != 1] == []
    assert scores.wrong_keys == []


@pytest.fixture
async def worker(topics: StreamTopics, stream_home: Path) -> AsyncIterator[Worker]:
    w = Worker(topics, stream_home / "worker.log")
    try:
        yield w
    finally:
        assert w.stop() == 0, w.output()


async def test_repeats_served_from_the_table_windows_counted_bad_records_dead_lettered(
    topics: StreamTopics, worker: Worker
) -> None:
    """A pair re-sent with the same content gets its stored score without the model; one
    re-sent with new content is scored again. The windows count pairs per product type and
    the views need a token. Records that are not pairs go to the dead-letter topic with the
    reason, and the stream goes on."""
    token = (await prepare_local_token(load_settings())).token
    first = [pair(i) for i in range(40)]
    async with CommittedScores(topics.bootstrap, topics.scores).running() as scores:
        await topics.send_pairs(first)
        await wait_until(lambda: scores.total >= 40, 90, interval_s=0.1, what="first scores")
        changed = [pair(i, title="revised") for i in range(30, 40)]
        await topics.send_pairs(first[:30] + changed)
        await topics.send(
            [
                ("bad-json", b"{oops"),
                ("bad-shape", orjson.dumps({"pair_id": "x", "a": {"title": "t"}})),
                ("blank", orjson.dumps({"pair_id": "y", "a": {"title": " "}, "b": {"title": "z"}})),
            ]
        )
        await topics.send_pairs([pair(i) for i in range(40, 44)])
        await wait_until(lambda: scores.total >= 84, 60, interval_s=0.1, what="every score")

    assert all(scores.values[f"pair-{i}"][0] == scores.values[f"pair-{i}"][1] for i in range(30))
    assert scores.counts == {f"pair-{i}": (2 if i < 40 else 1) for i in range(44)}
    async with httpx.AsyncClient(base_url=worker.url) as http:
        assert (await http.get("/duplicates/windows/")).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        windows = (await http.get("/duplicates/windows/", headers=headers)).json()["windows"]
        metrics = (await http.get("/duplicates/metrics", headers=headers)).text
    per_type: dict[str, int] = {}
    for row in windows:
        per_type[row["product_type"]] = per_type.get(row["product_type"], 0) + row["pairs"]
        assert 0 <= row["duplicates"] <= row["pairs"]
    assert per_type == {"kettle": 21, "toaster": 21, "blender": 21, "hammer": 21}
    assert 'stoker_stream_pairs_total{outcome="served_from_table"} 30.0' in metrics
    assert 'stoker_stream_pairs_total{outcome="scored"} 54.0' in metrics
    assert 'stoker_stream_pairs_total{outcome="dead_lettered"} 3.0' in metrics

    letters = await _read(topics.bootstrap, topics.dead, 3)
    kinds = sorted((d["error_kind"], d["original_key"]) for d in letters)
    assert kinds == [("decode", "bad-json"), ("schema", "bad-shape"), ("schema", "blank")]
    reasons = {d["original_key"]: d["reason"] for d in letters}
    assert "b: Field required" in reasons["bad-shape"]
    assert "must not be empty" in reasons["blank"] or "a.title" in reasons["blank"]


async def _scored(worker: Worker, token: str) -> float:
    """The worker's count of pairs it scored, from its metrics view (polled until the view
    answers: Faust opens its web server once the worker's tables are recovered)."""
    text = await _get_when_up(worker, "/duplicates/metrics", token)
    for line in text.splitlines():
        if line.startswith('stoker_stream_pairs_total{outcome="scored"}'):
            return float(line.split()[-1])
    raise AssertionError(f"no scored counter in {text!r}")


async def _get_when_up(worker: Worker, path: str, token: str, timeout_s: float = 60) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=worker.url) as http, asyncio.timeout(timeout_s):
        while True:
            assert worker.process.poll() is None, worker.output()
            try:
                response = await http.get(path, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.1)  # polled: the server is not listening yet
                continue
            assert response.status_code == 200, response.text
            return response.text


async def _read(bootstrap: str, topic: str, n: int) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        out: list[dict[str, object]] = []
        while len(out) < n:
            batch = await consumer.getmany(timeout_ms=60_000)
            assert batch, f"only {len(out)} of {n} records on {topic}"
            for messages in batch.values():
                out.extend(orjson.loads(m.value or b"{}")["data"] for m in messages)
        return out
    finally:
        await consumer.stop()
