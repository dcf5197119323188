"""The dashboard's first load in a real browser, with 10,000 jobs in the store.

Two embedded API processes (`stoker run api`) serve the dashboard: one over a SQLite store
holding `--jobs` jobs of the caller's team (spread over statuses, owners and instance types)
plus as many of another team's, one over an empty store (the peer). Debian's Chromium, driven
by Playwright, opens /dashboard/ in a fresh browser context each round, with the token
already in the tab's sessionStorage (as after signing in), and the clock runs from the start
of the navigation to the moment the jobs table holds its first page of rows (measured by the
page itself, `performance.now()`). Rounds alternate between the two servers; the figures
are medians. The target is under 1 s with 10,000 jobs; the ratio to the empty store shows
what the jobs cost beyond the page itself.

    .venv/bin/python bench/dashboard.py --jobs 10000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.core.job import JobRecord, JobStatus
from stoker.devinfra import free_ports

CHROMIUM = os.environ.get("STOKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
TARGET_S = 1.0
INSTANCE_TYPES = ("ml.m5.large", "ml.p3.2xlarge", "ml.g5.xlarge", "ml.c5.xlarge")
USABLE = """() => {
  const table = document.querySelector('#jobs-table[aria-busy="false"]');
  return table && table.tBodies[0].rows.length > 0 ? performance.now() : false;
}"""
"""Truthy (the time since the navigation began, in ms) once the first page of jobs shows."""

console = Console(width=120)


@dataclass(frozen=True)
class Args:
    jobs: int
    rounds: int


def job(n: int, team: str, at: datetime) -> JobRecord:
    status = list(JobStatus)[n % len(JobStatus)]
    kind = INSTANCE_TYPES[n % len(INSTANCE_TYPES)]
    return JobRecord(
        job_id=f"{team}-{n:06d}",
        owner=f"owner-{n % 17}",
        team=team,
        status=status,
        created_at=at,
        updated_at=at,
        attempt=n % 3,
        spec={"training": {"ResourceConfig": {"InstanceType": kind, "InstanceCount": 1}}},
        details={"instance_type": kind},
    )


async def fill(path: Path, count: int, progress: Progress) -> None:
    """`count` jobs of team `bench` and as many of team `other`, created a second apart."""
    store = SqliteJobStore(path)
    await store.start()
    task = progress.add_task("storing jobs", total=2 * count)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for first in range(0, count, 500):
            batch = range(first, min(first + 500, count))
            await asyncio.gather(
                *(
                    store.create(job(n, team, start + timedelta(seconds=n)))
                    for n in batch
                    for team in ("bench", "other")
                )
            )
            progress.advance(task, 2 * len(batch))
    finally:
        await store.close()


class Api:
    """`stoker run api` over its own data folder; `token` is a viewer of team `bench`."""

    def __init__(self, data: Path) -> None:
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STOKER_MODE": "embedded",
            "STOKER_DATA_DIR": str(data),
            "STOKER_API_PORT": str(self.port),
            "STOKER_LOG_LEVEL": "WARNING",
        }
        made = subprocess.run(
            [
                str(BIN / "stoker"),
                "auth",
                "token",
                "create",
                "--owner",
                "viewer",
                "--team",
                "bench",
                "--role",
                "viewer",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        self.token = made.stdout.strip()
        self.log = (data / "api.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "stoker"), "run", "api"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API over {data} did not start")
            time.sleep(0.1)  # another process starting: polled, with a deadline

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def first_load_ms(browser: Browser, api: Api) -> float:
    """One first load in a fresh context: navigation start to a usable jobs table."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    # The token as signing in leaves it: in this tab's sessionStorage, before any script.
    context.add_init_script(f"sessionStorage.setItem('stoker.token', {api.token!r})")
    page = context.new_page()
    try:
        page.goto(f"{api.url}/dashboard/", wait_until="commit")
        handle = page.wait_for_function(USABLE, polling="raf", timeout=30_000)
        return float(handle.json_value())
    finally:
        context.close()


@contextmanager
def servers(args: Args) -> Iterator[tuple[Api, Api]]:
    with tempfile.TemporaryDirectory(prefix="stoker-bench-dashboard-") as folder:
        full, empty = Path(folder, "full"), Path(folder, "empty")
        full.mkdir()
        empty.mkdir()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            asyncio.run(fill(full / "jobs.sqlite3", args.jobs, progress))
        # The empty store gets one job, so its table too has a row to wait for.
        with Progress(*columns, console=console) as progress:
            asyncio.run(fill(empty / "jobs.sqlite3", 1, progress))
        apis = [Api(full), Api(empty)]
        try:
            yield apis[0], apis[1]
        finally:
            for api in apis:
                api.close()


def main(args: Args) -> None:
    with servers(args) as (full, empty), sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            first_load_ms(browser, full)  # warm-up: the browser's own first start
            first_load_ms(browser, empty)
            timings: dict[str, list[float]] = {"full": [], "empty": []}
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("first loads", total=2 * args.rounds)
                for _ in range(args.rounds):
                    for name, api in (("full", full), ("empty", empty)):
                        timings[name].append(first_load_ms(browser, api))
                        progress.advance(task)
        finally:
            browser.close()
    full_ms = statistics.median(timings["full"])
    empty_ms = statistics.median(timings["empty"])
    table = Table(title=f"Dashboard first load, median of {args.rounds} rounds")
    for column in ("store", "median ms", "min ms", "max ms", "vs empty store", "target"):
        table.add_column(column, justify="right" if column != "store" else "left")
    for name, label in (("full", f"{args.jobs:,} jobs (x2 teams)"), ("empty", "1 job")):
        values = timings[name]
        median = statistics.median(values)
        table.add_row(
            label,
            f"{median:.0f}",
            f"{min(values):.0f}",
            f"{max(values):.0f}",
            f"{median / empty_ms:.2f}",
            ("met" if median / 1000 < TARGET_S else "MISSED") if name == "full" else "",
        )
    console.print(table)
    console.print(
        f"first load with {args.jobs:,} jobs: {full_ms:.0f} ms "
        f"({full_ms / empty_ms:.2f}x the empty store's {empty_ms:.0f} ms)"
    )


def parse() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs of the caller's team")
    parser.add_argument("--rounds", type=int, default=7, help="first loads per server")
    parsed = parser.parse_args()
    return Args(jobs=parsed.jobs, rounds=parsed.rounds)


if __name__ == "__main__":
    main(parse())
