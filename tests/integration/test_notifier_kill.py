"""Kill -9 the notifier mid-run, restart it: every job is still notified exactly once.

The notifier runs as a child process (this file's `__main__`) on the embedded SQLite
bus, store and ledger. The receiver, like any receiver should, counts distinct
idempotency keys; a job showing up under two different keys would be a double
notification no receiver could detect, and the test forbids it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from stoker.adapters.bus.sqlite_log import SqliteLogBus
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.app.notifier import serve
from stoker.core.job import JobStatus
from stoker.logs import configure_logging
from stoker.settings import load_settings
from tests.support.waiting import wait_quiet, wait_until
from tests.unit.notifier.support import Receiver, job, terminal

pytestmark = pytest.mark.integration

JOBS = 60
OWNERS = 6
CHILD = Path(__file__).resolve()
REPO = CHILD.parents[2]


async def _spawn(data_dir: Path, url: str, log: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "STOKER_DATA_DIR": str(data_dir),
        "STOKER_NOTIFY_DIGEST_WINDOW_S": "0.5",
        "STOKER_NOTIFY_SCAN_INTERVAL_S": "0.2",
        "STOKER_NOTIFY_INITIAL_BACKOFF_S": "0.05",
        "STOKER_NOTIFY_MAX_IN_FLIGHT": "4",
        "STOKER_NOTIFY_DEFAULT_TARGETS": f'[{{"kind": "webhook", "url": "{url}"}}]',
        # The receiver is on 127.0.0.1: the development allowance of the SSRF rules.
        "STOKER_NOTIFY_ALLOW_LOOPBACK": "true",
        # The tree under test first (services/ holds the package), then the tests.
        "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO)]),
    }
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), cwd=str(REPO), env=env, stdout=out, stderr=out
        )


async def test_sigkill_mid_run_and_restart_still_notifies_each_job_once(tmp_path: Path) -> None:
    """60 jobs of 6 owners; the notifier is SIGKILLed after a third of the deliveries and
    restarted; in the end each job appears under exactly one idempotency key."""
    bus = SqliteLogBus(tmp_path / "bus.sqlite3")
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await bus.start()
    await store.start()
    states = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED]
    for n in range(JOBS):
        owner = f"owner-{n % OWNERS}"
        await store.create(job(f"k{n}", owner))
        await bus.publish(*terminal(f"k{n}", owner, states[n % 3]))
    await store.close()
    await bus.close()

    log = tmp_path / "notifier.log"
    async with Receiver(delay_s=0.05) as receiver:

        def jobs_seen() -> Counter[str]:
            seen: dict[str, set[str]] = {}
            for delivery in receiver.accepted:
                for item in delivery.json()["jobs"]:
                    seen.setdefault(item["job_id"], set()).add(delivery.key)
            return Counter({job_id: len(keys) for job_id, keys in seen.items()})

        first = await _spawn(tmp_path, receiver.url(), log)
        try:
            await wait_until(lambda: len(receiver.accepted) >= 5, 60, 0.02, what="first deliveries")
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        before_restart = len(jobs_seen())
        assert before_restart < JOBS, "the kill came too late to test anything"

        second = await _spawn(tmp_path, receiver.url(), log)
        try:
            await wait_until(lambda: len(jobs_seen()) >= JOBS, 90, 0.02, what="every job notified")
            # Give a wrongly repeated send the time it would need to show up.
            await wait_quiet(lambda: len(receiver.requests), quiet_s=1.5, timeout_s=30)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
        assert second.returncode == 0, log.read_text()[-3000:]

        seen = jobs_seen()
        assert sorted(seen) == sorted(f"k{n}" for n in range(JOBS))
        assert set(seen.values()) == {1}, {j: c for j, c in seen.items() if c > 1}
        # Same-key repeats are the documented crash window; they must stay rare.
        repeats = len(receiver.accepted) - len({d.key for d in receiver.accepted})
        assert repeats <= 4


async def _child() -> None:
    configure_logging("INFO")
    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # A short lease lets the restarted process take over the killed one's partitions fast.
    bus = SqliteLogBus(settings.data_dir / "bus.sqlite3", lease_ttl_s=1.0)
    store = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    await bus.start()
    await store.start()
    try:
        await serve(settings, stop, bus=bus, store=store)
    finally:
        await bus.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(_child())
