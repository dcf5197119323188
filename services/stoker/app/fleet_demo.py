"""`stoker fleet demo`: the per-customer models' whole flow (MISSION.md section 3, seed 003)
on the embedded default, in one process, with nothing to install.

1. data: a processing job (`energy_data.py`) generates the seed's energy data set and
   writes one `<customer>.csv` per customer under `data/customers/`;
2. train: one training job with `InstanceCount` = workers reads them through a
   `ShardedByS3Key` channel (each worker process fits the customers of its shard) and writes
   `<customer>.tar.gz` through its checkpoint folder, synced to `models/`;
3. serve: the multi-model endpoint of `stoker endpoints serve` on `models/`, on a free
   loopback port, needing a bearer token like every stoker API (the demo makes one);
4. query: every model once, then Zipf-distributed traffic, through boto3's
   `sagemaker-runtime` client with `TargetModel`.

Both jobs go through the lifecycle (launcher, monitor, retrier, relay on the embedded bus
and store), as any submitted job would.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from stoker import training_scripts
from stoker.adapters.objects.local import LocalFolderStore
from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.auth import Authentication
from stoker.app.demo import demo_settings
from stoker.app.endpoint import build_endpoint
from stoker.app.fleet_traffic import TrafficResult, request_plan, runtime_client, send_traffic
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.auth.tokens import TokenAuthenticator, TokenService
from stoker.core import topics
from stoker.core.auth import Role
from stoker.core.job import JobRecord
from stoker.core.waiting import stop_requested
from stoker.inference.fleet import FleetConfig
from stoker.lifecycle.jobs import JobService, parse_spec
from stoker.settings import Settings

SERVICES = ("launcher", "monitor", "retrier", "relay")
TEAM = "default"
OWNER = "fleet-demo"
ENDPOINT_NAME = "customer-models"
TRAINING_JOB = "fleet-demo-train"
ROLE_ARN = "arn:aws:iam::000000000000:role/stoker-fleet-demo"
DATA_START, DATA_END = "2021-01-01", "2023-01-01"
"""Two years: what Prophet wants for its yearly seasonality."""
SCRIPTS = Path(training_scripts.__file__).parent
MIB = 1024 * 1024
CHECKPOINT_PERIOD_S = 2.0
RAW_INPUT = "/opt/ml/processing/input/raw"


class Phase(StrEnum):
    DATA = "generate and split"
    TRAIN = "train"
    SERVE = "serve"
    QUERY = "query"


@dataclass(frozen=True)
class FleetDemoPlan:
    """The run's size. Every field is checked by `check()` (the CLI's options map onto it)."""

    customers: int = 1000
    workers: int = 2
    """Training instances (worker processes) of the one training job."""
    rows_per_customer: int = 300
    requests: int = 2000
    """Zipf-distributed requests, after one request per model."""
    concurrency: int = 4
    """Requests in flight."""
    zipf_s: float = 1.1
    memory_mb: float = 512
    disk_mb: float = 4096
    serve_workers: int = 2
    uncertainty_samples: int = 100
    """Prophet's samples for a forecast's interval: its predict time grows with them."""
    seed: int = 0
    timeout_s: float = 3600.0
    input_dir: Path | None = None
    """A data set to split (CSV files of `customer_id,timestamp,consumption`) instead of
    generating one; `customers`, `rows_per_customer` and `seed` then size nothing."""

    def check(self) -> None:
        for name in ("customers", "workers", "concurrency", "serve_workers", "uncertainty_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rows_per_customer < 10:  # Prophet needs a few points to fit
            raise ValueError(f"rows_per_customer must be >= 10, got {self.rows_per_customer}")
        if self.requests < 0:
            raise ValueError(f"requests must be >= 0, got {self.requests}")
        if self.zipf_s <= 0:
            raise ValueError(f"zipf_s must be > 0, got {self.zipf_s}")
        if self.input_dir is not None and not self.input_dir.is_dir():
            raise ValueError(f"input_dir {self.input_dir} is not a folder")


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str
    failure_reason: str | None
    seconds: float | None
    """The backend's start to end time of the (last) attempt."""


@dataclass
class FleetDemoResult:
    folder: Path
    data: JobOutcome | None = None
    customers_written: int = 0
    rows_skipped: int = 0
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    """The data job's report of skipped rows: file, line, reason (the first 1,000)."""
    training: JobOutcome | None = None
    models_trained: int = 0
    failed_models: dict[str, str] = field(default_factory=dict)
    """Customers whose fit failed, with why (the training job's report)."""
    traffic: TrafficResult | None = None
    lookups: dict[str, float] = field(default_factory=dict)
    """The endpoint's cache lookups by tier where the model was found."""
    elapsed_s: float = 0.0

    @property
    def models_per_s(self) -> float | None:
        if self.training is None or not self.training.seconds or not self.models_trained:
            return None
        return self.models_trained / self.training.seconds

    @property
    def hit_rate(self) -> float | None:
        total = sum(self.lookups.values())
        return self.lookups.get("memory", 0.0) / total if total else None

    @property
    def succeeded(self) -> bool:
        return (
            self.traffic is not None
            and not self.traffic.errors
            and self.models_trained > 0
            and self.traffic.models_answered == self.models_trained
        )


Progress = Callable[[Phase, int, int | None], None]
"""(phase, done, total or None while unknown)."""
EndpointHook = Callable[[str, str], Awaitable[None]]
"""Awaited once the endpoint is healthy, before the traffic: (its URL, the bearer token)."""


def fleet_demo_settings(folder: Path) -> Settings:
    return demo_settings(folder)


def data_job(folder: Path, plan: FleetDemoPlan) -> dict[str, Any]:
    """The processing job that writes one CSV per customer under data/customers/."""
    customers_out = "/opt/ml/processing/output/customers"
    report_out = "/opt/ml/processing/output/report"
    inputs: list[dict[str, Any]] = []
    if plan.input_dir is None:
        source = [
            *("--customers", str(plan.customers)),
            *("--rows-per-customer", str(plan.rows_per_customer)),
            *("--start", DATA_START, "--end", DATA_END, "--seed", str(plan.seed)),
        ]
    else:
        source = ["--input", RAW_INPUT]
        inputs.append(
            {
                "InputName": "raw",
                "S3Input": {
                    "S3Uri": plan.input_dir.resolve().as_uri(),
                    "LocalPath": RAW_INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        )
    return {
        "job_id": "fleet-demo-data",
        "kind": "processing",
        "processing": {
            "RoleArn": ROLE_ARN,
            "AppSpecification": {
                "ImageUri": "stoker/energy-data:local",
                "ContainerEntrypoint": [sys.executable, str(SCRIPTS / "energy_data.py")],
                "ContainerArguments": [
                    *("--output", customers_out, "--report", f"{report_out}/report.json"),
                    *("--message-file", "/opt/ml/output/message"),
                    *source,
                ],
            },
            "ProcessingInputs": inputs,
            "ProcessingOutputConfig": {
                "Outputs": [
                    _output("customers", folder / "data" / "customers", customers_out),
                    _output("report", folder / "data" / "report", report_out),
                ]
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceType": "ml.m5.large",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 1,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": int(plan.timeout_s)},
        },
    }


def _output(name: str, dest: Path, local_path: str) -> dict[str, Any]:
    return {
        "OutputName": name,
        "S3Output": {"S3Uri": dest.as_uri(), "LocalPath": local_path, "S3UploadMode": "EndOfJob"},
    }


def training_job(folder: Path, plan: FleetDemoPlan) -> dict[str, Any]:
    """One training job, `InstanceCount` = workers, the customers' files sharded by key,
    each `<customer>.tar.gz` written through the checkpoint folder to models/."""
    return {
        "job_id": TRAINING_JOB,
        "training": {
            "AlgorithmSpecification": {
                "TrainingImage": "stoker/train-customers:local",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": [sys.executable, str(SCRIPTS / "train_customers.py")],
                # Every failed fit is reported and the job goes on: the summary names them.
                "ContainerArguments": [
                    *("--channel", "train", "--tolerate-failures", str(plan.customers)),
                    *("--uncertainty-samples", str(plan.uncertainty_samples)),
                ],
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": (folder / "data" / "customers").as_uri(),
                            "S3DataDistributionType": "ShardedByS3Key",
                        }
                    },
                    "ContentType": "text/csv",
                }
            ],
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": plan.workers,
                "VolumeSizeInGB": 1,
            },
            "CheckpointConfig": {
                "S3Uri": (folder / "models").as_uri(),
                "LocalPath": "/opt/ml/checkpoints",
            },
            "RoleArn": ROLE_ARN,
            "OutputDataConfig": {"S3OutputPath": (folder / "output").as_uri()},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(plan.timeout_s)},
        },
    }


async def run_fleet_demo(
    folder: Path,
    plan: FleetDemoPlan,
    on_progress: Progress,
    *,
    on_endpoint: EndpointHook | None = None,
    poll_s: float = 0.25,
) -> FleetDemoResult:
    """Run the four phases in order; a phase that fails ends the run with what it knew."""
    plan.check()
    settings = fleet_demo_settings(folder)
    result = FleetDemoResult(folder=folder)
    began = time.monotonic()
    # Checkpoints (the models) are saved every few seconds, so the train bar moves.
    backend = LocalProcessBackend(folder / "training", checkpoint_period_s=CHECKPOINT_PERIOD_S)
    async with Runtime(settings, backend=backend) as rt:
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        stop = asyncio.Event()
        stack = asyncio.create_task(run_services(rt, list(SERVICES), stop))
        jobs = JobService(rt.transitioner(), rt.clock, rules=rt.submission_rules())
        runner = _JobRunner(
            rt,
            jobs,
            backend,
            stack=stack,
            stop=stop,
            poll_s=poll_s,
            deadline=began + plan.timeout_s,
        )
        try:
            on_progress(Phase.DATA, 0, 1)
            result.data = await runner.run(data_job(folder, plan), lambda: None)
            _read_data_report(folder, result)
            on_progress(Phase.DATA, 1, 1)
            if result.data.status != "Completed":
                return result
            models = folder / "models"

            def trained() -> None:
                on_progress(Phase.TRAIN, _count_models(models), result.customers_written)

            result.training = await runner.run(training_job(folder, plan), trained)
            trained()
            _read_training_report(folder, result)
            if result.training.status != "Completed" or not result.models_trained:
                return result
            await _serve_and_query(
                rt,
                folder=folder,
                plan=plan,
                result=result,
                on_progress=on_progress,
                on_endpoint=on_endpoint,
            )
        finally:
            stop.set()
            await asyncio.gather(stack, return_exceptions=True)
            result.elapsed_s = time.monotonic() - began
    return result


class _JobRunner:
    """Submits a job spec and follows it to its end through the store."""

    def __init__(
        self,
        rt: Runtime,
        jobs: JobService,
        backend: LocalProcessBackend,
        *,
        stack: asyncio.Task[None],
        stop: asyncio.Event,
        poll_s: float,
        deadline: float,
    ) -> None:
        self._rt, self._jobs, self._backend = rt, jobs, backend
        self._stack, self._stop, self._poll_s, self._deadline = stack, stop, poll_s, deadline

    async def run(self, body: dict[str, Any], on_poll: Callable[[], None]) -> JobOutcome:
        spec = parse_spec(body)
        await self._jobs.submit(spec, owner=OWNER, team=TEAM)
        assert spec.job_id is not None  # the demo names its jobs
        while True:
            if self._stack.done():
                self._stack.result()  # a service that died ends the demo with its error
                raise RuntimeError("the lifecycle services stopped")
            job = await self._rt.store.get(spec.job_id)
            on_poll()
            if job.status.terminal:
                return await self._outcome(job, kind=body.get("kind", "training"))
            if time.monotonic() > self._deadline:
                await self._jobs.stop(spec.job_id, "the fleet demo ran out of time")
                self._deadline = float("inf")  # wait for the stop to end it
            await stop_requested(self._stop, self._poll_s)

    async def _outcome(self, job: JobRecord, *, kind: str) -> JobOutcome:
        seconds = None
        name = job.details.get("training_job_name")
        if isinstance(name, str):
            describe = (
                self._backend.describe_processing_job
                if kind == "processing"
                else self._backend.describe_training_job
            )
            described = await describe(name)
            if described.training_start_time and described.training_end_time:
                span = described.training_end_time - described.training_start_time
                seconds = span.total_seconds()
        return JobOutcome(job.job_id, str(job.status), job.failure_reason, seconds)


def _count_models(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.tar.gz")) if folder.is_dir() else 0


def _read_data_report(folder: Path, result: FleetDemoResult) -> None:
    path = folder / "data" / "report" / "report.json"
    if path.is_file():
        report = json.loads(path.read_text())
        result.customers_written = int(report.get("customers", 0))
        result.rows_skipped = int(report.get("rows_skipped", 0))
        result.bad_rows = list(report.get("bad_rows") or [])


def _read_training_report(folder: Path, result: FleetDemoResult) -> None:
    result.models_trained = _count_models(folder / "models")
    result.failed_models = training_failures(folder)


def training_failures(folder: Path) -> dict[str, str]:
    """The customers whose fit failed and why: the `failed` entries of each training host's
    `report-<host>.json`, read from the job's `output.tar.gz` (where SageMaker puts it too:
    `<S3OutputPath>/<job>/output/`), and any customer with neither a model nor a reported
    failure."""
    failures: dict[str, str] = {}
    for archive in sorted((folder / "output").glob(f"{TRAINING_JOB}*/output/output.tar.gz")):
        for report in host_reports(archive):
            failures.update({str(k): str(v) for k, v in (report.get("failed") or {}).items()})
    customers = {p.stem for p in (folder / "data" / "customers").glob("*.csv")}
    models = {p.name.removesuffix(".tar.gz") for p in (folder / "models").glob("*.tar.gz")}
    for missing in sorted(customers - models - set(failures)):
        failures[missing] = "no model was written and no failure was reported"
    return failures


def host_reports(archive: Path) -> list[dict[str, Any]]:
    """The hosts' `report-<host>.json` files of a training job's output.tar.gz."""
    reports = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name).name
            if member.isfile() and name.startswith("report-") and name.endswith(".json"):
                handle = tar.extractfile(member)
                if handle is not None:
                    reports.append(json.loads(handle.read()))
    return reports


async def _serve_and_query(
    rt: Runtime,
    *,
    folder: Path,
    plan: FleetDemoPlan,
    result: FleetDemoResult,
    on_progress: Progress,
    on_endpoint: EndpointHook | None,
) -> None:
    on_progress(Phase.SERVE, 0, 1)
    token = await TokenService(rt.tokens, rt.clock).create(
        OWNER, TEAM, Role.VIEWER, expires_in=timedelta(days=1), description="fleet demo"
    )
    config = FleetConfig(
        cache_dir=folder / "endpoint-cache",
        memory_bytes=int(plan.memory_mb * MIB),
        disk_bytes=int(plan.disk_mb * MIB),
        workers=plan.serve_workers,
    )
    store = LocalFolderStore(folder / "models")
    app = build_endpoint(
        store,
        config,
        endpoint_name=ENDPOINT_NAME,
        auth=Authentication(TokenAuthenticator(rt.tokens, rt.clock)),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _wait_healthy(url, serving)
        on_progress(Phase.SERVE, 1, 1)
        if on_endpoint is not None:
            await on_endpoint(url, token.token)
        names = await store.keys()
        traffic_plan = request_plan(names, plan.requests, s=plan.zipf_s, seed=plan.seed)
        on_progress(Phase.QUERY, 0, len(traffic_plan))

        def answered(ended: int) -> None:
            on_progress(Phase.QUERY, ended, len(traffic_plan))

        client = runtime_client(url, token.token, rt.settings.aws_region)
        result.traffic = await asyncio.to_thread(
            send_traffic,
            client,
            ENDPOINT_NAME,
            traffic_plan,
            concurrency=plan.concurrency,
            on_answer=answered,
        )
        result.lookups = await _cache_lookups(url)
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()


async def _wait_healthy(url: str, serving: asyncio.Task[None], timeout_s: float = 120.0) -> None:
    """Until the endpoint's `/ping` says healthy (its workers started)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        while True:
            if serving.done():
                serving.result()
                raise RuntimeError("the endpoint stopped before it was healthy")
            try:
                if (await http.get("/ping")).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"the endpoint at {url} was not healthy within {timeout_s} s")
            await asyncio.sleep(0.05)


async def _cache_lookups(url: str) -> dict[str, float]:
    """`stoker_endpoint_cache_lookups_total` by tier, from the endpoint's /metrics."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        reply = await http.get("/metrics")
        reply.raise_for_status()
    lookups: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.text):
        if family.name == "stoker_endpoint_cache_lookups":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    lookups[sample.labels["tier"]] = sample.value
    return lookups
