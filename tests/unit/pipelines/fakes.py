"""Test doubles behind the engine's ports: step jobs kept one per job id, and a publisher
that records what it was given."""

from __future__ import annotations

from collections.abc import Sequence

from stoker.core.events import CloudEvent
from stoker.core.pipelines.effects import StartStep
from stoker.core.pipelines.state import ExecutionState


class Jobs:
    """Step jobs as a job store keeps them: one per job id, however often started."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.created: dict[str, StartStep] = {}
        self.stopped: list[str] = []
        self.fail_next_start = False

    async def start(self, execution: ExecutionState, step: StartStep) -> None:
        del execution
        self.calls.append(step.job_id)
        if self.fail_next_start:
            self.fail_next_start = False
            raise ConnectionError("the job store went away")
        self.created.setdefault(step.job_id, step)

    async def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)


class Published:
    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        self.events.append(event)

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        self.events += events

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        raise AssertionError("the engine publishes CloudEvents only")

    def types(self) -> list[str]:
        return [e.type.removeprefix("stoker.pipeline.").removesuffix(".v1") for e in self.events]
