"""The service entry and the package's public surface."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

import stoker.notifier
from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.app.notifier import run_notifier
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import ConfigurationError
from stoker.notifier.service import CONSUMER_GROUP
from stoker.settings import Settings
from tests.support.buses import SourceRecordingBus
from tests.unit.notifier.support import job, terminal


@dataclass
class StartedRuntime:
    settings: Settings
    bus: MemoryBus = field(default_factory=MemoryBus)
    store: MemoryJobStore = field(default_factory=MemoryJobStore)
    clock: Clock = field(default_factory=SystemClock)


async def test_run_notifier_serves_a_started_runtime_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_notifier(runtime, stop)` consumes terminal events from the runtime's bus (as a
    background member) and, with no target configured, writes the file fallback; it returns
    once stopped."""
    out = tmp_path / "notes.jsonl"
    monkeypatch.setenv("STOKER_NOTIFY_LEDGER", "memory")
    monkeypatch.setenv("STOKER_NOTIFY_FALLBACK", "file")
    monkeypatch.setenv("STOKER_NOTIFY_FILE_PATH", str(out))
    bus = SourceRecordingBus()
    rt = StartedRuntime(Settings(data_dir=tmp_path), bus=bus)
    await rt.store.create(job("e1"))
    await rt.bus.publish(*terminal("e1"))
    stop = asyncio.Event()
    task = asyncio.create_task(run_notifier(rt, stop))
    deadline = time.monotonic() + 10
    while not (out.exists() and out.read_bytes().endswith(b"\n")):
        assert not task.done(), task
        assert time.monotonic() < deadline, "no notification written within 10 s"
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)
    [line] = out.read_bytes().splitlines()
    assert orjson.loads(line)["jobs"][0]["job_id"] == "e1"
    # Nothing waits on a notification to the millisecond: its member fetches in the background.
    assert bus.background == {CONSUMER_GROUP: True}


async def test_bad_notifier_settings_stop_the_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A malformed STOKER_NOTIFY_* value is a ConfigurationError naming it, without its value."""
    monkeypatch.setenv("STOKER_NOTIFY_SECRETS", "not json, but a secret")
    with pytest.raises(ConfigurationError, match="STOKER_NOTIFY_SECRETS") as caught:
        await run_notifier(Settings(data_dir=tmp_path), asyncio.Event())
    assert "a secret" not in str(caught.value)


def test_public_surface_is_what_it_claims() -> None:
    """Everything in __all__ exists, and nothing private is exported."""
    for name in stoker.notifier.__all__:
        assert hasattr(stoker.notifier, name), name
        assert not name.startswith("_")
    assert {"Notifier", "NotifySettings", "NotificationLedger"} <= set(stoker.notifier.__all__)
