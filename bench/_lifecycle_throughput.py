"""Part (a) of the lifecycle benchmark: jobs through Kafka and the store, end to end.

The launcher, monitor, retrier and outbox relay run as `stoker up` runs them
(`run_services`), on real Kafka and a real store (DynamoDB Local, or SQLite), against the
SageMaker-API simulator with "instant" jobs (Completed as soon as they are created). Jobs
are submitted through JobService, the path the HTTP API and the intake service take: the
store write, then the JobStatusChanged(New) event on Kafka that the launcher consumes.

Two layouts. `processes=2` (the default) runs the services in a process of their own, as a
deployment runs `stoker up` apart from the API that takes submissions: the bench process
submits and watches, the services process launches and follows (with the simulator, which
both its launcher and monitor call). `processes=1` runs everything in one process, on one
GIL.

A warm-up job goes all the way through first, so every consumer group has joined before
the clock starts. Figures come from the store afterwards: each job's history gives New at,
Launched at and its terminal time.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from botocore.exceptions import ClientError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from _lifecycle_backend import simulated_sagemaker
from _lifecycle_stats import JobTimes, job_times
from stoker.adapters.aws import AwsClients
from stoker.adapters.bus.kafka import LIBRDKAFKA_LOGGER
from stoker.adapters.store import layout
from stoker.adapters.store.dynamodb import DynamoDbJobStore
from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.app.process import run_service_process
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core import topics
from stoker.core.errors import StokerError
from stoker.core.events import CloudEvent, JobCompleted, JobFailed, JobStopped
from stoker.core.spec import JobSpec
from stoker.devinfra import DevInfra, infra_home, infra_state_dir
from stoker.lifecycle.jobs import JobService
from stoker.logs import configure_logging
from stoker.ports.bus import BusRecord
from stoker.ports.store import JobStore, Store
from stoker.settings import Mode, Settings
from stoker.simulator.engine import SimulatedSageMaker
from stoker.simulator.faults import DurationSpec, FaultConfig

STORES = ("dynamodb", "sqlite")
SERVICES = ["launcher", "monitor", "retrier", "relay"]
WARM_UP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ThroughputPlan:
    jobs: int
    store: str
    transport: str
    kafka_bootstrap: str
    dynamodb_endpoint: str
    concurrency: int = 64
    """Submissions in flight at once."""
    rate_per_s: float | None = None
    """Offered load; None submits as fast as `concurrency` allows."""
    poll_interval_s: float = 0.2
    """The monitor's ListTrainingJobs interval (instant jobs: how soon an end is seen)."""
    timeout_s: float = 900.0
    profile: Path | None = None
    processes: int = 2
    """2: the services in a process of their own; 1: everything in the bench process."""


@dataclass
class ThroughputResult:
    plan: ThroughputPlan
    times: list[JobTimes] = field(default_factory=list)
    submit_s: float = 0.0
    """Wall seconds from the first submit to the last submit returning."""
    finished: bool = False
    api_calls: dict[str, int] = field(default_factory=dict)
    max_created_per_name: int = 0
    wall_s: float = 0.0
    cpu_s: dict[str, Cpu] = field(default_factory=dict)
    """CPU time per process ("bench", "services"; "all" in one process) from the first
    submit to the last end."""
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the local servers the run used (started by `stoker dev infra` on this
    machine: they share its cores), over the same span; empty for remote servers."""


@dataclass(frozen=True)
class Cpu:
    process_s: float
    """Every thread of the process."""
    loop_s: float
    """The main thread alone, which runs the event loop: the part bound to one core."""

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.process_s - other.process_s, self.loop_s - other.loop_s)


def cpu_of(pid: int) -> Cpu:
    """CPU seconds a process and its main thread have used (Linux /proc, user + system)."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(stat: Path) -> float:
        # The fields after the command name (which may hold spaces) start at ")".
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return Cpu(used(Path(f"/proc/{pid}/stat")), used(Path(f"/proc/{pid}/task/{pid}/stat")))


async def local_server_pids(plan: ThroughputPlan) -> dict[str, int]:
    """The `stoker dev infra` servers on this machine that the run talks to, by name."""
    infra = DevInfra(infra_state_dir(), home=infra_home())
    try:
        rows = await infra.status(probe_timeout_s=1.0)
    except StokerError:
        return {}
    used = {a.strip() for a in plan.kafka_bootstrap.split(",")}
    if plan.store == "dynamodb":
        used.add(plan.dynamodb_endpoint)
    return {r.name: r.pid for r in rows if r.pid is not None and r.address in used}


def job_spec(run: str, n: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "job_id": f"{run}-{n:05d}",
            "owner": "bench",
            "training": {
                "AlgorithmSpecification": {
                    "TrainingImage": "bench/img:1",
                    "TrainingInputMode": "File",
                },
                "RoleArn": "arn:aws:iam::000000000000:role/bench",
                "ResourceConfig": {
                    "InstanceType": "ml.m5.large",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 1,
                },
                "OutputDataConfig": {"S3OutputPath": "s3://bench/out"},
                "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            },
        }
    )


class TerminalWatch:
    """Counts jobs whose public terminal event reached Kafka (a consumer of its own)."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self._waiting: dict[str, asyncio.Event] = {}

    async def handle(self, event: CloudEvent, _record: BusRecord) -> None:
        if isinstance(event.data, JobCompleted | JobFailed | JobStopped):
            self.ended.add(event.data.job_id)
            waiter = self._waiting.pop(event.data.job_id, None)
            if waiter is not None:
                waiter.set()

    async def wait_for(self, job_id: str, timeout_s: float) -> None:
        if job_id in self.ended:
            return
        waiter = self._waiting.setdefault(job_id, asyncio.Event())
        await asyncio.wait_for(waiter.wait(), timeout_s)


def _settings(plan: ThroughputPlan, run: str, data_dir: Path) -> Settings:
    return Settings(
        mode=Mode.KAFKA,
        data_dir=data_dir,
        kafka_bootstrap=plan.kafka_bootstrap,
        topic_prefix=f"{run}.",
        dynamodb_endpoint=plan.dynamodb_endpoint,
        dynamodb_table_prefix=run,
        training_backend="sagemaker",
        monitor_poll_interval_s=plan.poll_interval_s,
        # The simulator has no throttle here: part (a) measures the pipeline, not the API.
        monitor_api_rate_per_s=100_000,
        log_level="ERROR",
    )


def _store(plan: ThroughputPlan, settings: Settings) -> Store:
    if plan.store == "sqlite":
        return SqliteJobStore(settings.data_dir / "jobs.sqlite3")

    return DynamoDbJobStore(settings)


@dataclass(frozen=True)
class _Bench:
    """One run of part (a): what it measures, where, and where its figures go."""

    plan: ThroughputPlan
    run: str
    """The run's name: topic prefix, consumer groups, table prefix, job ids."""
    settings: Settings
    result: ThroughputResult
    on_progress: Callable[[str, int, int], None]


async def run_throughput(
    plan: ThroughputPlan, on_progress: Callable[[str, int, int], None]
) -> ThroughputResult:
    if plan.store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {plan.store!r}")
    if plan.processes not in (1, 2):
        raise ValueError(f"processes must be 1 or 2, got {plan.processes}")
    run = f"bench-{uuid.uuid4().hex[:10]}"
    result = ThroughputResult(plan)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stoker-bench-") as folder:
        settings = _settings(plan, run, Path(folder))
        bench = _Bench(plan, run, settings, result, on_progress)
        try:
            layout_run = _in_one_process if plan.processes == 1 else _in_two_processes
            figures = await layout_run(bench)
        finally:
            await _drop_topics(plan.kafka_bootstrap, settings.topic_prefix)
            if plan.store == "dynamodb":
                await _drop_table(settings, layout.job_table_name(run))
    result.api_calls = figures["requests"]
    result.max_created_per_name = figures["max_created_per_name"]
    result.wall_s = time.perf_counter() - started
    return result


@asynccontextmanager
async def _services_runtime(
    plan: ThroughputPlan, settings: Settings
) -> AsyncIterator[tuple[Runtime, SimulatedSageMaker]]:
    """The runtime the services run on: the chosen store, Kafka, and a fresh simulator."""
    async with (
        simulated_sagemaker(plan.transport, _faults()) as (backend, engine),
        Runtime(settings, store=_store(plan, settings), backend=backend) as rt,
    ):
        yield rt, engine


def _engine_figures(engine: SimulatedSageMaker) -> dict[str, Any]:
    """The simulator's call counts, as the result takes them (and a process can send them)."""
    return {
        "requests": dict(engine.stats.requests),
        "max_created_per_name": engine.stats.as_dict()["max_created_per_name"],
    }


async def _in_one_process(bench: _Bench) -> dict[str, Any]:
    async with _services_runtime(bench.plan, bench.settings) as (rt, engine):
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(rt, SERVICES, stop))
        try:
            await _run(bench, rt, pids={"all": os.getpid()}, services=services)
        finally:
            stop.set()
            await asyncio.gather(services, return_exceptions=True)
        return _engine_figures(engine)


async def _in_two_processes(bench: _Bench) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    signals = _Signals(spawn.Event(), spawn.Event(), spawn.Queue())
    # The bench's runtime comes first: it makes the store's tables the services then find.
    async with Runtime(bench.settings, store=_store(bench.plan, bench.settings)) as rt:
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        child = spawn.Process(
            target=serve_services,
            args=(bench.plan, bench.settings, signals),
            name="stoker-services",
        )
        child.start()
        exited = asyncio.create_task(_exit_of(child))
        try:
            bench.on_progress("starting the services process", 0, 1)
            ready = asyncio.create_task(asyncio.to_thread(signals.ready.wait, WARM_UP_TIMEOUT_S))
            await _or_fail(ready, [exited])
            pids = {"bench": os.getpid(), "services": child.pid or 0}
            await _run(bench, rt, pids=pids, services=exited)
        finally:
            signals.stop.set()
            figures = await asyncio.to_thread(_get_or_none, signals.outcome, 60.0)
            await asyncio.to_thread(child.join, 60.0)
            exited.cancel()
            if child.is_alive():
                child.kill()
    if figures is None:
        raise RuntimeError(f"the services process ended without its figures ({child.exitcode})")
    return dict(figures)


@dataclass(frozen=True)
class _Signals:
    """Between the bench and the services process: ready, stop, and the figures back."""

    ready: Any
    stop: Any
    outcome: multiprocessing.Queue[dict[str, Any]]


def serve_services(plan: ThroughputPlan, settings: Settings, signals: _Signals) -> None:
    """The services process: launcher, monitor, retrier and relay on the simulator, until
    told to stop; then the simulator's call counts go back to the bench."""
    configure_logging("ERROR")
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)
    run_service_process(_serve_services(plan, settings, signals), settings)


async def _serve_services(plan: ThroughputPlan, settings: Settings, signals: _Signals) -> None:
    async with _services_runtime(plan, settings) as (rt, engine):
        stopping = asyncio.Event()
        services = asyncio.create_task(run_services(rt, SERVICES, stopping))
        signals.ready.set()
        await asyncio.to_thread(signals.stop.wait)
        stopping.set()
        await services
        signals.outcome.put(_engine_figures(engine))


async def _exit_of(child: Any) -> None:
    await asyncio.to_thread(child.join)
    raise RuntimeError(f"the services process exited early (exit code {child.exitcode})")


def _get_or_none(queue: multiprocessing.Queue[dict[str, Any]], timeout_s: float) -> Any:
    try:
        return queue.get(timeout=timeout_s)
    except Empty:
        return None


def _faults() -> FaultConfig:
    return FaultConfig(duration=DurationSpec(kind="instant"), startup_s=0)


async def _run(
    bench: _Bench, rt: Runtime, *, pids: dict[str, int], services: asyncio.Task[None]
) -> None:
    plan, run, result, on_progress = bench.plan, bench.run, bench.result, bench.on_progress
    watch = TerminalWatch()
    stop = asyncio.Event()
    # Figures come from the store: the watcher only counts ends, so it may fetch lazily.
    watcher = Consumer.for_events(
        rt.bus,
        "bench-terminal",
        [topics.COMPLETED, topics.FAILED, topics.STOPPED],
        watch.handle,
        config=BACKGROUND,
    )
    tasks = [services, asyncio.create_task(watcher.run(stop))]
    service = JobService(rt.transitioner(), rt.clock)
    try:
        on_progress("warming up (consumer groups joining)", 0, 1)
        warm = job_spec(run, 0).model_copy(update={"job_id": f"{run}-warmup"})
        await service.submit(warm)
        await _or_fail(watch.wait_for(f"{run}-warmup", WARM_UP_TIMEOUT_S), tasks)
        servers = await local_server_pids(plan)
        profiler = cProfile.Profile() if plan.profile else None
        if profiler is not None:
            profiler.enable()
        cpu_before = {name: cpu_of(pid) for name, pid in pids.items()}
        server_before = {name: cpu_of(pid).process_s for name, pid in servers.items()}
        ids = await _submit_all(service, bench, watch)
        deadline = time.monotonic() + plan.timeout_s
        while len(watch.ended & ids) < len(ids) and time.monotonic() < deadline:
            for task in tasks:
                if task.done():
                    task.result()  # a service died: its error is the result
            on_progress("running", len(watch.ended & ids), len(ids))
            await asyncio.sleep(0.1)
        result.cpu_s = {name: cpu_of(pid) - cpu_before[name] for name, pid in pids.items()}
        result.server_cpu_s = {
            name: cpu_of(pid).process_s - server_before[name] for name, pid in servers.items()
        }
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(plan.profile))
        result.finished = len(watch.ended & ids) == len(ids)
        on_progress("running", len(watch.ended & ids), len(ids))
    finally:
        stop.set()
        await asyncio.gather(tasks[1], return_exceptions=True)
    on_progress("reading job histories", 0, len(ids))
    result.times = await _histories(rt.store, sorted(ids), on_progress)


async def _or_fail(waiting: Any, tasks: list[asyncio.Task[None]]) -> None:
    """Await `waiting`, but fail at once if a background task died meanwhile."""
    wait = asyncio.ensure_future(waiting)
    done, _ = await asyncio.wait([wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task in done:
            wait.cancel()
            task.result()
            raise RuntimeError("a service stopped during the benchmark")
    await wait


async def _submit_all(service: JobService, bench: _Bench, watch: TerminalWatch) -> set[str]:
    plan, run, on_progress = bench.plan, bench.run, bench.on_progress
    specs = [job_spec(run, n) for n in range(1, plan.jobs + 1)]
    ids = {str(s.job_id) for s in specs}
    gate = asyncio.Semaphore(plan.concurrency)
    began = time.perf_counter()
    submitted = 0

    async def submit(n: int, spec: JobSpec) -> None:
        nonlocal submitted
        if plan.rate_per_s:
            # Open loop at the offered rate: job n is due n / rate seconds after the start.
            delay = began + n / plan.rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with gate:
            await service.submit(spec)
        submitted += 1
        if submitted % 200 == 0:
            on_progress("submitting", len(watch.ended & ids), plan.jobs)

    await asyncio.gather(*(submit(n, spec) for n, spec in enumerate(specs)))
    bench.result.submit_s = time.perf_counter() - began
    return ids


async def _histories(
    store: JobStore, ids: list[str], on_progress: Callable[[str, int, int], None]
) -> list[JobTimes]:
    gate = asyncio.Semaphore(32)
    out: list[JobTimes] = []

    async def one(job_id: str) -> None:
        async with gate:
            out.append(job_times(await store.history(job_id)))
        if len(out) % 500 == 0:
            on_progress("reading job histories", len(out), len(ids))

    await asyncio.gather(*(one(i) for i in ids))
    return out


async def _drop_topics(bootstrap: str, prefix: str) -> None:
    """Give the run's topics back: a development broker otherwise keeps every run's (one
    morning of runs left 480 topics with 3,890 partitions)."""

    def drop() -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = admin.list_topics(timeout=30).topics
        names = [name for name in listed if name.startswith(prefix)]
        if not names:
            return
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):  # gone already: nothing to give back
                future.result()

    # A broker that cannot be reached now must not hide why the run ended.
    with contextlib.suppress(KafkaException):
        await asyncio.to_thread(drop)


async def _drop_table(settings: Settings, table: str) -> None:
    """DynamoDB Local keeps tables in memory: give the run's table back."""
    clients = AwsClients(settings)
    try:
        db = await clients.dynamodb()
        with contextlib.suppress(ClientError):
            await db.delete_table(TableName=table)
    finally:
        await clients.close()
