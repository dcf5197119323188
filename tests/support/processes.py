"""Test processes killed on purpose: run a module of this repository in a child process,
wait until it has reached a point the test names, then SIGKILL it."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


async def kill_when(
    module: str, args: list[str], reached: Callable[[], bool], log: Path, *, what: str
) -> None:
    """Run `python -m module args...` from the repository root (its output to `log`), wait
    until `reached()` (files the child writes: polled, with a deadline), then SIGKILL it.
    Fails, showing the log, if the child ended before; returns once it is dead."""
    with log.open("wb") as out:
        child = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", module, *args),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_until(
            lambda: child.returncode is not None or reached(), 60, interval_s=0.05, what=what
        )
        assert child.returncode is None, _output(log)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL


def _output(log: Path) -> str:
    """What the child wrote: shown when it ended before the test was ready."""
    return log.read_text(errors="replace")
