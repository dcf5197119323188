"""The embedded training backend: each job is a local process in a SageMaker-style layout.

`<work>/<job>/` holds the job's `/opt/ml` tree, `logs.txt` (its stdout and stderr) and
`state.json`, rewritten atomically on every change. The folder is created with an exclusive
mkdir, so one name is one job even across processes sharing the work folder. Another process
(a monitor run on its own) describes and lists jobs from the state files and stops them by
leaving a marker the owning process notices.

A job lost because its owning process died (it never wrote a final state) is reported as
Failed with an InternalServerError reason, which the failure rules retry.

Only what the local rules allow runs (their entrypoint allowlist; by default the training
scripts shipped with stoker); anything else is refused with InvalidRequest before a folder
is made. Each process gets a clean environment, its job folder as working directory and
HOME, and the rules' CPU, memory and open-file limits (container.py says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tarfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stoker.adapters.training.container import (
    JobPaths,
    LocalJobRequest,
    container_env,
    copy_into,
    failure_reason,
    limited_command,
    local_path,
    parse_request,
    refusal,
    write_layout,
)
from stoker.adapters.training.s3io import S3Folders, S3TransferError
from stoker.core.clock import Clock, SystemClock
from stoker.core.policy import LocalRunRules
from stoker.logs import get_logger
from stoker.ports.training import (
    InvalidRequest,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
    TrainingJobNotFound,
    TrainingJobStatus,
    TrainingJobSummary,
)
from stoker.training_scripts import shipped_entrypoints

log = get_logger("stoker.adapters.training.local")

_S = TrainingJobStatus
_LOST_REASON = "InternalServerError: the local training process was lost (its owner stopped)"
_SHUTDOWN_REASON = "InternalServerError: the local backend shut down while the job ran"
_MARKER_POLL_S = 0.25  # how soon a stop asked by another process is noticed


class _SetupFailed(Exception):
    """Input or checkpoint data could not be staged: the job fails with ClientError."""


@dataclass
class _Job:
    name: str
    arn: str
    paths: JobPaths
    instance_type: str
    status: TrainingJobStatus
    secondary: str
    creation_time: datetime
    last_modified: datetime
    failure_reason: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    model_artifacts: str | None = None
    owner_pid: int = field(default_factory=os.getpid)
    queued: bool = True
    stop_requested: bool = False
    shutting_down: bool = False
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def to_state(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "name": self.name,
            "arn": self.arn,
            "instance_type": self.instance_type,
            "status": self.status.value,
            "secondary": self.secondary,
            "failure_reason": self.failure_reason,
            "creation_time": iso(self.creation_time),
            "last_modified": iso(self.last_modified),
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "model_artifacts": self.model_artifacts,
            "owner_pid": self.owner_pid,
        }

    @classmethod
    def from_state(cls, paths: JobPaths, data: dict[str, Any]) -> _Job:
        def parse(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        created = datetime.fromisoformat(data["creation_time"])
        return cls(
            name=data["name"],
            arn=data["arn"],
            paths=paths,
            instance_type=data["instance_type"],
            status=TrainingJobStatus(data["status"]),
            secondary=data["secondary"],
            creation_time=created,
            last_modified=parse(data["last_modified"]) or created,
            failure_reason=data.get("failure_reason"),
            start_time=parse(data.get("start_time")),
            end_time=parse(data.get("end_time")),
            model_artifacts=data.get("model_artifacts"),
            owner_pid=int(data.get("owner_pid") or 0),
            queued=False,
        )

    def describe(self) -> TrainingJobDescription:
        seconds = None
        if self.start_time is not None and self.end_time is not None:
            seconds = max(0, round((self.end_time - self.start_time).total_seconds()))
        return TrainingJobDescription(
            name=self.name,
            arn=self.arn,
            status=self.status,
            secondary_status=self.secondary,
            failure_reason=self.failure_reason,
            creation_time=self.creation_time,
            last_modified_time=self.last_modified,
            training_start_time=self.start_time,
            training_end_time=self.end_time,
            billable_seconds=seconds,
            training_seconds=seconds,
            model_artifacts=self.model_artifacts,
            instance_type=self.instance_type,
        )

    def summary(self) -> TrainingJobSummary:
        return TrainingJobSummary(
            name=self.name,
            status=self.status,
            last_modified_time=self.last_modified,
            creation_time=self.creation_time,
            training_end_time=self.end_time,
            secondary_status=self.secondary,
        )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalProcessBackend:
    """TrainingBackend running `ContainerEntrypoint + ContainerArguments` as local processes.

    max_concurrent: jobs running at once; later ones wait, InProgress/Starting (default 2).
    stop_grace_s: time between SIGTERM and SIGKILL when stopping (default 10 s).
    s3_endpoint: where s3:// channels, checkpoints and outputs go (None: AWS itself).
    rules: what may run and within which limits (default: the shipped training scripts,
        with LocalRunRules' default limits).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        max_concurrent: int = 2,
        stop_grace_s: float = 10.0,
        clock: Clock | None = None,
        region: str = "us-east-1",
        s3_endpoint: str | None = None,
        rules: LocalRunRules | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if stop_grace_s < 0:
            raise ValueError(f"stop_grace_s must be >= 0, got {stop_grace_s}")
        self.calls: Counter[str] = Counter()
        self.work_dir = work_dir
        self._grace_s = stop_grace_s
        self._clock = clock or SystemClock()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._jobs: dict[str, _Job] = {}
        self._s3 = S3Folders(region=region, endpoint_url=s3_endpoint)
        rules = rules or LocalRunRules()
        if rules.entrypoints is None:
            rules = rules.model_copy(update={"entrypoints": shipped_entrypoints()})
        self.rules = rules

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        """Stop the processes still running; their jobs end Failed (InternalServerError)."""
        running = [job for job in self._jobs.values() if job.task and not job.task.done()]
        for job in running:
            job.shutting_down = True
            job.stop_event.set()
            if job.queued and job.task is not None:
                job.task.cancel()
        for job in running:
            if job.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await job.task
            if not job.status.terminal:
                self._finish(job, _S.FAILED, "Failed", _SHUTDOWN_REASON)
        await self._s3.close()

    # --- the port ------------------------------------------------------------------------

    async def create_training_job(self, request: dict[str, Any]) -> str:
        self.calls["CreateTrainingJob"] += 1
        spec = parse_request(request)
        refused = refusal(self.rules, spec)
        if refused is not None:
            log.warning("local training job refused", training_job_name=spec.name, reason=refused)
            raise InvalidRequest(refused)
        paths = self._paths(spec.name)
        try:
            paths.root.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise TrainingJobAlreadyExists(spec.name) from exc
        now = self._clock.now()
        job = _Job(
            name=spec.name,
            arn=f"arn:aws:sagemaker:local:000000000000:training-job/{spec.name.lower()}",
            paths=paths,
            instance_type=spec.instance_type,
            status=_S.IN_PROGRESS,
            secondary="Starting",
            creation_time=now,
            last_modified=now,
        )
        self._jobs[spec.name.lower()] = job
        self._save(job)
        job.task = asyncio.create_task(self._run(job, spec, request), name=f"train:{spec.name}")
        job.task.add_done_callback(self._task_done)
        log.info("local training job created", training_job_name=spec.name)
        return job.arn

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        self.calls["DescribeTrainingJob"] += 1
        job = self._jobs.get(name.lower()) or self._load(self._paths(name))
        if job is None:
            raise TrainingJobNotFound(name)
        return job.describe()

    async def list_training_jobs(
        self,
        *,
        status_equals: TrainingJobStatus | None = None,
        last_modified_time_after: datetime | None = None,
        name_contains: str | None = None,
        max_results: int | None = None,
        before_page: Callable[[], Awaitable[None]] | None = None,
    ) -> list[TrainingJobSummary]:
        if max_results is not None and max_results < 1:
            raise ValueError(f"max_results must be >= 1 or None, got {max_results}")
        if before_page is not None:
            await before_page()  # one "page": local processes have no API to page through
        self.calls["ListTrainingJobs"] += 1
        jobs = dict(self._jobs)
        if self.work_dir.is_dir():
            for folder in self.work_dir.iterdir():
                if folder.name not in jobs:
                    loaded = self._load(JobPaths(folder))
                    if loaded is not None:
                        jobs[folder.name] = loaded
        rows = [
            job.summary()
            for job in jobs.values()
            if (status_equals is None or job.status is status_equals)
            and (last_modified_time_after is None or job.last_modified > last_modified_time_after)
            and (not name_contains or name_contains.lower() in job.name.lower())
        ]
        rows.sort(key=lambda row: (row.creation_time, row.name), reverse=True)
        return rows if max_results is None else rows[:max_results]

    async def stop_training_job(self, name: str) -> None:
        self.calls["StopTrainingJob"] += 1
        job = self._jobs.get(name.lower())
        if job is None:
            foreign = self._load(self._paths(name))
            if foreign is None:
                raise TrainingJobNotFound(name)
            if not foreign.status.terminal:
                # Another process runs it; it watches for this marker.
                foreign.paths.stop_marker.touch()
            return
        if job.status.terminal or job.stop_requested:
            return
        job.stop_requested = True
        if job.queued and job.task is not None:
            job.task.cancel()
            self._finish(job, _S.STOPPED, "Stopped")
            return
        self._set(job, _S.STOPPING, "Stopping")
        job.stop_event.set()

    # --- running a job -------------------------------------------------------------------

    async def _run(self, job: _Job, spec: LocalJobRequest, request: dict[str, Any]) -> None:
        async with self._slots:
            job.queued = False
            if job.stop_requested or job.shutting_down:
                return
            try:
                self._set(job, _S.IN_PROGRESS, "Downloading")
                checkpoint_dir = await self._stage(job.paths, spec, request)
            except _SetupFailed as exc:
                self._finish(job, _S.FAILED, "Failed", f"ClientError: {exc}"[:1024])
                return
            if job.stop_requested or job.shutting_down:
                self._finish(job, _S.STOPPED, "Stopped")
                return
            job.start_time = self._clock.now()
            self._set(job, _S.IN_PROGRESS, "Training")
            exit_code, timed_out = await self._execute(job, spec, checkpoint_dir)
            await self._conclude(job, spec, checkpoint_dir, exit_code, timed_out=timed_out)

    async def _stage(self, paths: JobPaths, spec: LocalJobRequest, request: dict[str, Any]) -> Path:
        """Lay out /opt/ml, fetch the channels and checkpoints; returns the checkpoint folder."""
        await asyncio.to_thread(write_layout, paths, spec, request)
        try:
            for channel in spec.channels:
                dest = paths.data / channel.name
                source = local_path(channel.uri)
                if source is not None:
                    await asyncio.to_thread(copy_into, source, dest)
                else:
                    await self._s3.download_prefix(channel.uri, dest)
            checkpoint_dir = paths.checkpoints
            if spec.checkpoint_uri:
                folder = local_path(spec.checkpoint_uri)
                if folder is not None:
                    # A local checkpoint folder is used in place, so a later attempt resumes.
                    checkpoint_dir = folder
                else:
                    await self._s3.download_prefix(spec.checkpoint_uri, checkpoint_dir)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError, S3TransferError) as exc:
            raise _SetupFailed(str(exc)) from exc
        return checkpoint_dir

    async def _execute(
        self, job: _Job, spec: LocalJobRequest, checkpoint_dir: Path
    ) -> tuple[int, bool]:
        """Run the process to its end; returns (exit code, stopped for MaxRuntime)."""
        env = container_env(job.paths, spec, checkpoint_dir)
        with job.paths.logs.open("ab") as logs:
            try:
                process = await asyncio.create_subprocess_exec(
                    *limited_command(spec.command, self.rules),
                    stdout=logs,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    cwd=job.paths.root,
                    start_new_session=True,  # its own process group: a stop reaches children
                )
            except OSError as exc:
                logs.write(f"cannot start {spec.command[0]!r}: {exc}\n".encode())
                return 127, False
            log.info("training process started", training_job_name=job.name, pid=process.pid)
            deadline = self._clock.monotonic() + spec.max_runtime_s if spec.max_runtime_s else None
            exited = asyncio.ensure_future(process.wait())
            stop = asyncio.ensure_future(job.stop_event.wait())
            timed_out = False
            try:
                while not exited.done():
                    timeout = _MARKER_POLL_S
                    if deadline is not None:
                        timeout = min(timeout, max(0.0, deadline - self._clock.monotonic()))
                    await asyncio.wait(
                        {exited, stop}, timeout=timeout, return_when="FIRST_COMPLETED"
                    )
                    if exited.done():
                        break
                    if job.paths.stop_marker.exists() and not job.stop_requested:
                        job.stop_requested = True
                        self._set(job, _S.STOPPING, "Stopping")
                    if deadline is not None and self._clock.monotonic() >= deadline:
                        timed_out = True
                    if stop.done() or job.stop_requested or timed_out:
                        await self._terminate(process)
                        break
            finally:
                stop.cancel()
            return await exited, timed_out

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self._grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def _conclude(
        self,
        job: _Job,
        spec: LocalJobRequest,
        checkpoint_dir: Path,
        exit_code: int,
        *,
        timed_out: bool,
    ) -> None:
        if spec.checkpoint_uri and local_path(spec.checkpoint_uri) is None:
            with contextlib.suppress(S3TransferError):
                await self._s3.upload_folder(checkpoint_dir, spec.checkpoint_uri)
        if job.shutting_down:
            self._finish(job, _S.FAILED, "Failed", _SHUTDOWN_REASON)
        elif timed_out:
            self._finish(job, _S.STOPPED, "MaxRuntimeExceeded")
        elif job.stop_requested:
            self._finish(job, _S.STOPPED, "Stopped")
        elif exit_code != 0:
            self._finish(job, _S.FAILED, "Failed", failure_reason(job.paths, exit_code))
        else:
            self._set(job, _S.IN_PROGRESS, "Uploading")
            try:
                job.model_artifacts = await self._publish_model(job, spec)
            except (OSError, S3TransferError) as exc:
                reason = f"InternalServerError: cannot save the model: {exc}"[:1024]
                self._finish(job, _S.FAILED, "Failed", reason)
                return
            self._finish(job, _S.COMPLETED, "Completed")

    async def _publish_model(self, job: _Job, spec: LocalJobRequest) -> str:
        """Pack /opt/ml/model as model.tar.gz where OutputDataConfig says; returns its URI."""
        await asyncio.to_thread(_pack, job.paths.model, job.paths.artifacts)
        output = spec.output_path
        if not output:
            return job.paths.artifacts.as_uri()
        target = f"{output.rstrip('/')}/{job.name}/output/model.tar.gz"
        folder = local_path(output)
        if folder is None:
            await self._s3.upload_file(job.paths.artifacts, target)
            return target
        dest = folder / job.name / "output" / "model.tar.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(dest.write_bytes, job.paths.artifacts.read_bytes())
        return dest.resolve().as_uri()

    # --- state ---------------------------------------------------------------------------

    def _paths(self, name: str) -> JobPaths:
        # Lower-cased: SageMaker names are unique regardless of case.
        return JobPaths(self.work_dir / name.lower())

    def _set(self, job: _Job, status: TrainingJobStatus, secondary: str) -> None:
        job.status = status
        job.secondary = secondary
        job.last_modified = self._clock.now()
        self._save(job)

    def _finish(
        self, job: _Job, status: TrainingJobStatus, secondary: str, reason: str | None = None
    ) -> None:
        job.failure_reason = reason
        job.end_time = self._clock.now()
        self._set(job, status, secondary)
        log.info(
            "local training job ended",
            training_job_name=job.name,
            status=status.value,
            failure_reason=reason,
        )

    def _save(self, job: _Job) -> None:
        tmp = job.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.to_state()), encoding="utf-8")
        tmp.replace(job.paths.state)

    def _load(self, paths: JobPaths) -> _Job | None:
        try:
            data = json.loads(paths.state.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("unreadable local job state", path=str(paths.state))
            return None
        job = _Job.from_state(paths, data)
        if not job.status.terminal and not _pid_alive(job.owner_pid):
            job.status, job.secondary, job.failure_reason = _S.FAILED, "Failed", _LOST_REASON
            job.end_time = job.last_modified = self._clock.now()
            self._save(job)
        return job

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A job task must never die silently: record the crash as the job's failure.
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("local training job crashed", task=task.get_name(), exc_info=exc)
        for job in self._jobs.values():
            if job.task is task and not job.status.terminal:
                self._finish(job, _S.FAILED, "Failed", f"InternalServerError: {exc}"[:1024])


def _pack(folder: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
