"""Job lifecycle benchmark: end-to-end throughput, and SageMaker API calls spent monitoring.

(a) throughput: N jobs (default 10,000) submitted through JobService, launched, followed and
    completed by the launcher / monitor / retrier / relay services on real Kafka and a real
    store (DynamoDB Local and/or SQLite), against the SageMaker-API simulator with instant
    jobs. Prints jobs/s from the first New to the last terminal state and submit-to-launch
    latency (history: New at -> Launched at), p50 / p99. Targets: >= 1,000 jobs/s, p99 < 100 ms.
(b) monitoring: 2,000 simulated ~10-minute jobs started at t=0 (so ending in one minute),
    under a 2 requests/s API throttle, in virtual time. stoker's Monitor and Notifier
    (listing only, and with the simulator's EventBridge state-change events) against the
    seed design's per-job DescribeTrainingJob loop at 60 s, in the same run. Targets: <= 1.1
    calls per job (>= 10x fewer than the seed design), no failed poll, every owner told within
    60 s of the end at p99 and 90 s at worst.

    export AWS_ACCESS_KEY_ID=stokerlocal AWS_SECRET_ACCESS_KEY=stokerlocal
    .venv/bin/python bench/lifecycle.py                      # both parts, both stores
    .venv/bin/python bench/lifecycle.py --part throughput --store sqlite --jobs 2000
    .venv/bin/python bench/lifecycle.py --part monitoring --monitor-jobs 2000

Details and measured numbers: docs/benchmarks-lifecycle.md.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import pstats
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _lifecycle_backend import TRANSPORTS
from _lifecycle_monitoring import (
    MonitoringPlan,
    PollerResult,
    run_seed_poller,
    run_stoker_monitor,
)
from _lifecycle_stats import end_to_end_rate, spread, stage_percentiles_ms, summarize_ms
from _lifecycle_throughput import STORES, ThroughputPlan, ThroughputResult, run_throughput
from stoker.adapters.bus.kafka import LIBRDKAFKA_LOGGER
from stoker.app.process import run_service_process
from stoker.logs import configure_logging
from stoker.notifier.digest import DEFAULT_WINDOW_S
from stoker.settings import Settings

TARGET_JOBS_PER_S = 1000.0
TARGET_P99_MS = 100.0
TARGET_CALL_RATIO = 10.0
TARGET_CALLS_PER_JOB = 1.1
TARGET_TOLD_P99_S = 60.0
TARGET_TOLD_MAX_S = 90.0

console = Console(width=140)


@dataclass(frozen=True)
class Args:
    parts: list[str]
    jobs: int
    stores: list[str]
    transport: str
    concurrency: int
    rate_per_s: float | None
    poll_interval_s: float
    timeout_s: float
    kafka_bootstrap: str
    dynamodb_endpoint: str
    monitor_jobs: int
    profile: Path | None
    processes: int
    repeat: int


def _verdict(ok: bool) -> str:
    return "[green]pass[/]" if ok else "[red]MISS[/]"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _updater(progress: Progress, label: str) -> Callable[[str, int, int], None]:
    task = progress.add_task(label, total=1)

    def update(phase: str, done: int, total: int) -> None:
        progress.update(task, description=f"{label}: {phase}", completed=done, total=total)

    return update


async def throughput(args: Args) -> list[ThroughputResult]:
    results = []
    with _progress() as progress:
        for store, run in itertools.product(args.stores, range(1, args.repeat + 1)):
            plan = ThroughputPlan(
                jobs=args.jobs,
                store=store,
                transport=args.transport,
                kafka_bootstrap=args.kafka_bootstrap,
                dynamodb_endpoint=args.dynamodb_endpoint,
                concurrency=args.concurrency,
                rate_per_s=args.rate_per_s,
                poll_interval_s=args.poll_interval_s,
                timeout_s=args.timeout_s,
                profile=_profile_path(args, store, run),
                processes=args.processes,
            )
            label = f"kafka + {store}" + (f", run {run}/{args.repeat}" if args.repeat > 1 else "")
            results.append(await run_throughput(plan, _updater(progress, label)))
    _throughput_table(results)
    if args.repeat > 1:
        _repeat_summary(results)
    for result in results:
        if result.plan.profile is not None:
            console.print(f"[bold]cProfile, {result.plan.store}[/] ({result.plan.profile})")
            pstats.Stats(str(result.plan.profile)).sort_stats("tottime").print_stats(25)
    return results


def _profile_path(args: Args, store: str, run: int) -> Path | None:
    if args.profile is None:
        return None
    return args.profile.with_suffix(
        f".{store}.prof" if args.repeat == 1 else f".{store}.{run}.prof"
    )


def _throughput_table(results: list[ThroughputResult]) -> None:
    table = Table(title="(a) Jobs through Kafka and the store, instant simulated backend")
    for column in (
        "bus + store",
        "backend",
        "jobs done",
        "seconds",
        "jobs/s",
        f"target >= {TARGET_JOBS_PER_S:,.0f}",
        "launch p50 ms",
        "launch p99 ms",
        "launch max ms",
        f"p99 < {TARGET_P99_MS:.0f} ms",
        "API calls",
        "max creates/name",
    ):
        table.add_column(column, justify="left" if column == "bus + store" else "right")
    for r in results:
        latencies = _launch_s(r)
        ended = [t for t in r.times if t.ended_at is not None]
        seconds, rate = end_to_end_rate(r.times) if ended else (float("nan"), 0.0)
        lat = summarize_ms(latencies) if latencies else None
        offered = f", offered {r.plan.rate_per_s:,.0f}/s" if r.plan.rate_per_s else ""
        table.add_row(
            f"kafka + {r.plan.store}{offered}",
            "simulator over HTTP" if r.plan.transport == "http" else "simulator in-process",
            f"{len(ended):,}/{r.plan.jobs:,}" + ("" if r.finished else " (timed out)"),
            f"{seconds:.1f}",
            f"{rate:,.0f}",
            _verdict(r.finished and rate >= TARGET_JOBS_PER_S),
            f"{lat.p50_ms:.0f}" if lat else "-",
            f"{lat.p99_ms:.0f}" if lat else "-",
            f"{lat.max_ms:.0f}" if lat else "-",
            _verdict(lat is not None and lat.p99_ms < TARGET_P99_MS),
            " ".join(
                f"{op.removesuffix('TrainingJob').removesuffix('TrainingJobs')}={n:,}"
                for op, n in sorted(r.api_calls.items())
            ),
            str(r.max_created_per_name),
        )
    console.print(table)
    for r in results:
        stuck = Counter(str(t.last_status) for t in r.times if t.ended_at is None)
        if stuck:
            console.print(
                f"[red]kafka + {r.plan.store}: jobs not ended, by status: {dict(stuck)}[/]"
            )
        console.print(
            f"kafka + {r.plan.store}: submitting took {r.submit_s:.1f} s "
            f"({r.plan.jobs / r.submit_s:,.0f} submits/s, {r.plan.concurrency} in flight); "
            f"whole run incl. setup and history reads {r.wall_s:.0f} s"
        )
        per_job = ", ".join(
            f"{name} {1000 * cpu.process_s / r.plan.jobs:.2f} ms (event loop "
            f"{1000 * cpu.loop_s / r.plan.jobs:.2f} ms)"
            for name, cpu in r.cpu_s.items()
        )
        per_job += "".join(
            f", server {name} {1000 * cpu_s / r.plan.jobs:.2f} ms"
            for name, cpu_s in r.server_cpu_s.items()
        )
        stages = ", ".join(
            f"{k} {p50:,.0f} / {p99:,.0f} ms"
            for k, (p50, p99) in stage_percentiles_ms(r.times).items()
        )
        console.print(f"kafka + {r.plan.store}: time per stage, p50 / p99: {stages}")
        console.print(
            f"kafka + {r.plan.store}: {r.plan.processes} process(es); CPU per job: {per_job}"
        )


def _repeat_summary(results: list[ThroughputResult]) -> None:
    """Median and range per store over the repeated runs: one run on a shared machine says
    little (docs/benchmarks-lifecycle.md)."""
    table = Table(title="(a) Repeated runs: median (lowest - highest)")
    for column in ("bus + store", "runs", "jobs/s", "launch p50 ms", "launch p99 ms"):
        table.add_column(column, justify="left" if column == "bus + store" else "right")
    for store in dict.fromkeys(r.plan.store for r in results):
        mine = [r for r in results if r.plan.store == store]
        rates = [end_to_end_rate(r.times)[1] for r in mine if _ended(r)]
        launches = [summarize_ms(s) for r in mine if (s := _launch_s(r))]
        table.add_row(
            f"kafka + {store}",
            str(len(mine)),
            _spread_text(rates, "{:,.0f}"),
            _spread_text([s.p50_ms for s in launches], "{:,.0f}"),
            _spread_text([s.p99_ms for s in launches], "{:,.0f}"),
        )
    console.print(table)


def _ended(result: ThroughputResult) -> bool:
    return any(t.ended_at is not None for t in result.times)


def _launch_s(result: ThroughputResult) -> list[float]:
    return [t.submit_to_launch_s for t in result.times if t.submit_to_launch_s is not None]


def _spread_text(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    s = spread(values)
    return f"{fmt.format(s.median)} ({fmt.format(s.low)} - {fmt.format(s.high)})"


async def monitoring(args: Args) -> list[PollerResult]:
    plan = MonitoringPlan(jobs=args.monitor_jobs)
    with _progress() as progress:
        stoker = await run_stoker_monitor(
            plan, _counter(_updater(progress, "stoker, listing only"))
        )
        events = await run_stoker_monitor(
            plan,
            _counter(_updater(progress, "stoker, state-change events")),
            state_changes=True,
        )
        seed = await run_seed_poller(
            plan, throttled=False, on_progress=_counter(_updater(progress, "seed, no throttle"))
        )
        paced = await run_seed_poller(
            plan, throttled=True, on_progress=_counter(_updater(progress, "seed, paced"))
        )
    results = [stoker, events, seed, paced]
    _monitoring_table(plan, results)
    return results


def _counter(update: Callable[[str, int, int], None]) -> Callable[[int, int], None]:
    return lambda done, total: update("jobs seen ended", done, total)


def _monitoring_table(plan: MonitoringPlan, results: list[PollerResult]) -> None:
    stoker = results[0]
    table = Table(
        title=(
            f"(b) Monitoring {plan.jobs:,} jobs of {plan.duration_low_s / 60:.1f}-"
            f"{plan.duration_high_s / 60:.1f} min (+{plan.startup_s:.0f} s start-up), "
            f"interval stoker {plan.stoker_poll_interval_s:.0f} s, "
            f"seed {plan.poll_interval_s:.0f} s, "
            f"{plan.throttle_rps:g} requests/s throttle, "
            f"virtual time, simulator {'over HTTP' if plan.transport == 'http' else 'in-process'}"
        )
    )
    for column in (
        "poller",
        "List",
        "Describe",
        f"calls/job (<= {TARGET_CALLS_PER_JOB:g})",
        f"stoker fewer (target >= {TARGET_CALL_RATIO:.0f}x)",
        "throttled",
        "failed polls",
        "rounds",
        "all ended seen at s",
        "end -> recorded p50 / p99 / max s",
        f"end -> told p50 / p99 / max s (p99 <= {TARGET_TOLD_P99_S:.0f}, max <= "
        f"{TARGET_TOLD_MAX_S:.0f})",
        "details known at s",
    ):
        table.add_column(column, justify="left" if column == "poller" else "right")
    for r in results:
        ratio = r.total_calls / stoker.total_calls if stoker.total_calls else float("nan")
        mine = r.name.startswith("stoker")
        verdict = "-" if mine else f"{ratio:.1f}x {_verdict(ratio >= TARGET_CALL_RATIO)}"
        per_job = r.calls_per_job(plan.jobs)
        told = (r.told(50), r.told(99), r.told(100))
        told_text = _triple(told)
        if mine and None not in told:
            ok = (told[1] or 0) <= TARGET_TOLD_P99_S and (told[2] or 0) <= TARGET_TOLD_MAX_S
            told_text += f" {_verdict(ok)}"
        table.add_row(
            r.name,
            f"{r.calls.get('ListTrainingJobs', 0):,}",
            f"{r.calls.get('DescribeTrainingJob', 0):,}",
            f"{per_job:.2f}" + (f" {_verdict(per_job <= TARGET_CALLS_PER_JOB)}" if mine else ""),
            verdict,
            str(r.throttled),
            f"{r.failed_polls} {_verdict(r.failed_polls == 0)}",
            str(r.rounds),
            f"{r.all_terminal_after_s:,.0f}" if r.all_terminal_after_s is not None else "never",
            _triple((r.staleness(50), r.staleness(99), r.staleness(100))),
            told_text,
            f"{r.details_after_s:,.0f}" if r.details_after_s is not None else "-",
        )
    console.print(table)
    console.print(
        "seed rows: told = seen (the seed design notifies when its poll sees the end); "
        "stoker rows: told = the notifier sent the message naming the job (digest window "
        f"{DEFAULT_WINDOW_S:.0f} s), details = billable time and model artifacts recorded."
    )


def _triple(values: tuple[float | None, float | None, float | None]) -> str:
    if None in values:
        return "-"
    return " / ".join(f"{v:,.0f}" for v in values if v is not None)


async def main(args: Args) -> None:
    if "throughput" in args.parts:
        await throughput(args)
    if "monitoring" in args.parts:
        await monitoring(args)


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", choices=["throughput", "monitoring", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=10_000, help="(a) jobs to run")
    parser.add_argument(
        "--store", default="dynamodb,sqlite", help=f"(a) comma-separated, from {STORES}"
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="http",
        help="(a) simulator through aiobotocore over HTTP, or called in-process",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="(a) give up on unfinished jobs after this"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="(a) submissions in flight")
    parser.add_argument(
        "--rate", type=float, default=None, help="(a) offered jobs/s (default: as fast as possible)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.2, help="(a) monitor pass interval, seconds"
    )
    parser.add_argument(
        "--kafka-bootstrap", default=os.environ.get("STOKER_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--dynamodb-endpoint",
        default=os.environ.get("STOKER_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
    )
    parser.add_argument(
        "--processes",
        type=int,
        choices=[1, 2],
        default=2,
        help="(a) 2: the services in a process of their own (as `stoker up` beside the API);"
        " 1: everything in the bench process",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="(a) runs per store, each with fresh names; prints the median and range too",
    )
    parser.add_argument("--monitor-jobs", type=int, default=2000, help="(b) simulated jobs")
    parser.add_argument(
        "--profile", type=Path, default=None, help="(a) write cProfile stats to PATH.<store>.prof"
    )
    ns = parser.parse_args()
    stores = [s.strip() for s in ns.store.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        parser.error(f"unknown store(s) {unknown}; choose from {list(STORES)}")
    if ns.jobs < 1 or ns.monitor_jobs < 1 or ns.concurrency < 1 or ns.repeat < 1:
        parser.error("--jobs, --monitor-jobs, --concurrency and --repeat must be >= 1")
    parts = ["throughput", "monitoring"] if ns.part == "both" else [ns.part]
    return Args(
        parts=parts,
        jobs=ns.jobs,
        stores=stores,
        transport=ns.transport,
        concurrency=ns.concurrency,
        rate_per_s=ns.rate,
        poll_interval_s=ns.poll_interval,
        timeout_s=ns.timeout,
        kafka_bootstrap=ns.kafka_bootstrap,
        dynamodb_endpoint=ns.dynamodb_endpoint,
        monitor_jobs=ns.monitor_jobs,
        profile=ns.profile,
        processes=ns.processes,
        repeat=ns.repeat,
    )


if __name__ == "__main__":
    # DynamoDB Local and the simulator check no signature, but botocore insists on having
    # credentials; DynamoDB Local takes only alphanumeric key ids.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "stokerlocal")
    # One log line per transition would cost more than the work measured; errors still show.
    configure_logging("ERROR")
    # librdkafka reports leader elections of the run's fresh topics as errors; they are retried.
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)
    # Both processes run as stoker's own do (with the collector tuned).
    run_service_process(main(parse_args()), Settings())
