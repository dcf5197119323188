"""`stoker events tail --json`: one CloudEvent per line, as published, for scripts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.cli.events import show_event
from stoker.core import topics
from stoker.core.events import CloudEvent, JobCompleted, JobFailed, decode_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


EVENTS = [
    CloudEvent.wrap(
        JobCompleted(job_id="a", owner="ana", attempts=1, ended_at=T0, billable_seconds=60),
        time=T0,
    ),
    CloudEvent.wrap(
        JobFailed(job_id="b", owner="ana", attempts=3, ended_at=T0, failure_reason="X: [bold]y"),
        time=T0,
    ),
]


def test_each_event_is_one_line_of_its_cloudevent_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Each line decodes to the very event that was published."""
    for event in EVENTS:
        show_event(event, topics.COMPLETED, as_json=True)
    lines = capsys.readouterr().out.splitlines()
    assert [decode_event(line.encode()) for line in lines] == EVENTS


def test_the_text_form_prints_markup_like_text_as_it_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    show_event(EVENTS[1], topics.FAILED, as_json=False)
    assert "X: [bold]y" in capsys.readouterr().out


async def _publish(data_dir: Path) -> None:
    bus = SqliteLogBus(data_dir / "bus.sqlite3")
    await bus.start()
    await bus.ensure_topics(list(topics.ALL_TOPICS))
    for event in EVENTS:
        topic = topics.COMPLETED if isinstance(event.data, JobCompleted) else topics.FAILED
        await bus.publish(topic, event)
    await bus.close()


TAIL_ARGS = ["events", "tail", "--direct", "--json", "--from-beginning"]


def test_the_command_streams_json_lines_until_interrupted(tmp_path: Path) -> None:
    """Against an embedded bus holding two terminal events: `--direct --json --from-beginning`
    prints both, one per line and nothing else (logs go to stderr), and stops cleanly on
    SIGINT."""
    asyncio.run(_publish(tmp_path))
    env = {**os.environ, "STOKER_DATA_DIR": str(tmp_path), "STOKER_MODE": "embedded"}
    with subprocess.Popen(
        [sys.executable, "-m", "stoker.cli.main", *TAIL_ARGS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in EVENTS]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    received = sorted((decode_event(line.encode()) for line in lines), key=lambda e: e.subject)
    assert received == EVENTS
