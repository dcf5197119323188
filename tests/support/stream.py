"""Helpers of the duplicate stream's integration tests: topics, pairs, workers, a
`read_committed` reader of the scores topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stoker.devinfra.procs import free_ports
from tests.support.processes import REPO_ROOT

FAKE_BACKEND = "tests.unit.router.fakes:stream_model_set"
KINDS = ("kettle", "toaster", "blender", "hammer")
PARTITIONS = 4


def pair(i: int, *, prefix: str = "pair", title: str = "model") -> dict[str, object]:
    kind = KINDS[i % len(KINDS)]
    return {
        "pair_id": f"{prefix}-{i}",
        "a": {"title": f"{kind} {title} {i}", "product_type": kind},
        "b": {"title": f"{KINDS[(i * 3) % 4]} {title} {i // 2}", "description": "steel"},
    }


@dataclass
class StreamTopics:
    bootstrap: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def pairs(self) -> str:
        return f"test.pairs.{self.suffix}"

    @property
    def scores(self) -> str:
        return f"test.scores.{self.suffix}"

    @property
    def dead(self) -> str:
        return f"test.dead.{self.suffix}"

    @property
    def app_id(self) -> str:
        return f"test-stream-{self.suffix}"

    async def create(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(t, PARTITIONS, 1) for t in (self.pairs, self.scores, self.dead)]
            )
        finally:
            await admin.close()

    async def send(self, records: list[tuple[str, bytes]]) -> None:
        """(key, value) records onto the pairs topic, keyed as producers are asked to."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            sent = [
                await producer.send(self.pairs, key=key.encode(), value=value)
                for key, value in records
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def send_pairs(self, pairs: list[dict[str, object]]) -> None:
        await self.send([(str(p["pair_id"]), orjson.dumps(p)) for p in pairs])

    def worker_args(self, web_port: int, log_level: str = "warning") -> list[str]:
        return [
            "stream",
            "--backend", FAKE_BACKEND,
            "--group", self.app_id,
            "--pairs-topic", self.pairs,
            "--scores-topic", self.scores,
            "--dead-letter-topic", self.dead,
            "--partitions", str(PARTITIONS),
            "--max-batch", "256",
            "--web-port", str(web_port),
            "--log-level", log_level,
        ]  # fmt: skip


def stream_env(data_dir: Path, bootstrap: str) -> dict[str, str]:
    """The worker's environment: Kafka for the stream, the embedded store for view tokens."""
    return {
        "STOKER_MODE": "embedded",
        "STOKER_DATA_DIR": str(data_dir),
        "STOKER_KAFKA_BOOTSTRAP": bootstrap,
        "STOKER_LOG_LEVEL": "WARNING",
        # The broker's shortest session: a SIGKILLed worker's partitions move on soonest.
        "STOKER_STREAM_SESSION_TIMEOUT_S": "6",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "services"), str(REPO_ROOT)]),
    }


class Worker:
    """`stoker router stream` in a child process (`python -m stoker.cli.router stream`)."""

    def __init__(self, topics: StreamTopics, log: Path, *, log_level: str = "warning") -> None:
        (self.web_port,) = free_ports(1)
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stoker.cli.router",
                    *topics.worker_args(self.web_port, log_level),
                ],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def stop(self) -> int:
        """SIGTERM, wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not stop on SIGTERM:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class CommittedScores:
    """Reads the scores topic as a `read_committed` consumer, in the background: `counts`
    is how many scores each pair id has so far, `values` its scores in order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        self.counts: Counter[str] = Counter()
        self.values: dict[str, list[float]] = {}
        self.wrong_keys: list[bytes | None] = []
        """Keys of scores not keyed by their pair id (none expected)."""
        self._task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[CommittedScores]:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            await self._consumer.stop()

    async def _run(self) -> None:
        async for message in self._consumer:
            data = orjson.loads(message.value or b"{}")["data"]
            if message.key != data["pair_id"].encode():
                self.wrong_keys.append(message.key)
            self.counts[data["pair_id"]] += 1
            self.values.setdefault(data["pair_id"], []).append(data["score"])

    @property
    def total(self) -> int:
        return sum(self.counts.values())
