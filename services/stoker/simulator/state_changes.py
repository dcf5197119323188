"""The simulator's EventBridge side: "SageMaker Training Job State Change" events.

SageMaker sends one such event to EventBridge whenever a training job's status or secondary
status changes, with the job's whole description as its `detail` (times in epoch
milliseconds, tags as a map). `StateChangeFeed` publishes the same events for the
simulator's jobs, at the times their changes happen, through any `Publisher` (a topic of the
bus: what an EventBridge rule forwarding to Kafka delivers), so the monitor's state-change
path is tested and measured as it runs in production.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from stoker.core import topics
from stoker.ports.bus import Publisher
from stoker.simulator.engine import SimJob, SimulatedSageMaker

DETAIL_TYPE = "SageMaker Training Job State Change"


def state_change_event(engine: SimulatedSageMaker, job: SimJob, at: datetime) -> dict[str, Any]:
    """The EventBridge event SageMaker sends for `job`'s change at time `at`."""
    described = engine.description(job, at)
    detail = {k: _epoch_ms(v) for k, v in described.items()}
    detail["SecondaryStatusTransitions"] = [
        {k: _epoch_ms(v) for k, v in row.items()} for row in described["SecondaryStatusTransitions"]
    ]
    detail["Tags"] = {
        str(tag.get("Key")): str(tag.get("Value"))
        for tag in job.request.get("Tags") or []
        if isinstance(tag, dict)
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.sagemaker",
        "account": engine.faults.account_id,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": engine.faults.region,
        "resources": [job.arn],
        "detail": detail,
    }


class StateChangeFeed:
    """Publishes every timeline change of `engine`'s jobs once its time has come, in time
    order, as JSON on `topic` keyed by the training job's name."""

    def __init__(
        self,
        engine: SimulatedSageMaker,
        publisher: Publisher,
        *,
        topic: str = topics.SAGEMAKER_STATE_CHANGES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_wait_s: float = 0.2,
    ) -> None:
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be > 0, got {max_wait_s}")
        self._engine = engine
        self._publisher = publisher
        self._topic = topic
        self._sleep = sleep
        self._max_wait_s = max_wait_s
        # (time, seq, job key, index in its timeline): each change not yet published. A
        # redrawn timeline (a stop) adds its new changes; entries it replaced are skipped.
        self._due: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._published: dict[str, int] = {}
        """Per job key: how many changes of its timeline went out."""
        self.published = 0
        for job in engine.jobs.values():
            self._drawn(job)
        engine.timeline_listeners.append(self._drawn)

    def _drawn(self, job: SimJob) -> None:
        key = job.name.lower()
        start = self._published.get(key, 0)
        for index, change in enumerate(job.timeline[start:], start):
            heapq.heappush(self._due, (change.at.timestamp(), next(self._seq), key, index))

    def next_at(self) -> float | None:
        """Epoch seconds of the next change to publish, if any."""
        return self._due[0][0] if self._due else None

    def due(self) -> list[dict[str, Any]]:
        """The events whose time has come and that did not go out yet, oldest first."""
        now = self._engine.clock.now()
        events = []
        while self._due and self._due[0][0] <= now.timestamp():
            at, _, key, index = heapq.heappop(self._due)
            job = self._engine.jobs.get(key)
            done = self._published.get(key, 0)
            if (
                job is None
                or index < done
                or index >= len(job.timeline)
                or job.timeline[index].at.timestamp() != at
            ):
                continue  # published already, or replaced by a redrawn timeline
            for change in job.timeline[done : index + 1]:
                events.append(state_change_event(self._engine, job, change.at))
            self._published[key] = index + 1
        return events

    async def publish_due(self) -> int:
        """Publish what is due; returns how many events went out."""
        events = self.due()
        for event in events:
            value = json.dumps(event, separators=(",", ":")).encode()
            await self._publisher.publish_raw(
                self._topic, event["detail"]["TrainingJobName"], value
            )
        self.published += len(events)
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish changes as their times come, until `stop`; waits at most `max_wait_s` at a
        time, so jobs created meanwhile are not missed."""
        while not stop.is_set():
            await self.publish_due()
            upcoming = self.next_at()
            now = self._engine.clock.now().timestamp()
            wait = self._max_wait_s if upcoming is None else min(self._max_wait_s, upcoming - now)
            await self._sleep(max(wait, 0.0))


def _epoch_ms(value: object) -> object:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else value
