"""Which consumers may fetch lazily: none on the launch path, every other lifecycle one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stoker.app.runtime import Runtime
from stoker.app.services import lifecycle_consumer, run_monitor
from stoker.lifecycle.launcher import Launcher
from stoker.lifecycle.monitor import Monitor
from stoker.lifecycle.retrier import Retrier
from stoker.settings import Settings
from tests.support.buses import SourceRecordingBus
from tests.support.waiting import wait_until
from tests.unit.lifecycle.conftest import World


async def test_only_the_launchers_lifecycle_consumer_fetches_eagerly(
    world: World, tmp_path: Path
) -> None:
    """A New job waits on the launcher's fetch; nothing waits on the monitor's or the
    retrier's, so theirs open as background members (Kafka holds them longer)."""
    bus = SourceRecordingBus()
    await bus.start()
    rt = Runtime(Settings(data_dir=tmp_path), bus=bus, store=world.store)
    roles = {
        "launcher": Launcher(world.transitioner, world.backend, world.clock),
        "monitor": Monitor(world.transitioner, world.backend, world.clock),
        "retrier": Retrier(world.transitioner, world.clock),
    }
    for group, role in roles.items():
        consumer = lifecycle_consumer(rt, group, role)
        assert await consumer.run_once() == 0
        await consumer.close()
    assert bus.background == {"launcher": False, "monitor": True, "retrier": True}


async def test_the_monitors_state_change_consumer_is_a_background_one_too(
    world: World, tmp_path: Path
) -> None:
    """With a SageMaker state-change source configured, the monitor reads it beside the
    lifecycle topic, also as a background member: it has its listing pass as well."""
    bus = SourceRecordingBus()
    await bus.start()
    settings = Settings(data_dir=tmp_path, sagemaker_state_changes=True)
    rt = Runtime(settings, bus=bus, store=world.store, backend=world.backend)
    stop = asyncio.Event()
    task = asyncio.create_task(run_monitor(rt, stop))
    await wait_until(
        lambda: len(bus.background) == 2,
        10,
        interval_s=0.01,
        what="both consumers opened",
        while_running=[task],
    )
    stop.set()
    await asyncio.wait_for(task, 10)
    assert bus.background == {"stoker-monitor": True, "stoker-monitor-state-changes": True}
