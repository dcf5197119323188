"""JobSubmitted events go through the same checks as HTTP submissions: a request the policy
refuses is dead-lettered with the rule broken, and no job is made."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.app.runtime import Runtime
from stoker.app.services import run_intake
from stoker.core import topics
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent, DeadLetter, JobSubmitted
from stoker.lifecycle.jobs import parse_spec
from stoker.settings import Settings
from tests.support.events import TopicReader
from tests.unit.lifecycle.conftest import spec


async def test_a_refused_event_is_dead_lettered_with_the_rule(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default:\n  role_arns: ['arn:aws:iam::111111111111:role/stoker-*']\n")
    bus, store = MemoryBus(), MemoryJobStore()
    await bus.start()
    await store.start()
    rt = Runtime(Settings(data_dir=tmp_path, policy_file=policy), bus=bus, store=store)
    refused = parse_spec(spec("refused"))
    await bus.publish(
        topics.SUBMISSIONS, CloudEvent.wrap(JobSubmitted(spec=refused), time=datetime.now(UTC))
    )
    stop = asyncio.Event()
    intake = asyncio.create_task(run_intake(rt, stop))
    try:
        async with TopicReader(bus, topics.DEAD_LETTER) as reader:
            await reader.read_until(lambda: bool(reader.events_of(DeadLetter)), 10)
            (letter,) = reader.events_of(DeadLetter)
    finally:
        stop.set()
        await intake
    assert letter.original_key == "refused"
    assert "training.RoleArn" in letter.reason
    assert "[role_arns]" in letter.reason
    with pytest.raises(JobNotFound):
        await store.get("refused")
