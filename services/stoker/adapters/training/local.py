"""The embedded training backend: each job is a local process in a SageMaker-style layout.

`<work>/<job>/` holds the job's `/opt/ml` tree, `logs.txt` (its stdout and stderr), its
request and `state.json`, rewritten atomically on every change (`local_state` has the
files). The folder is created with an exclusive mkdir, so one name is one job even across
processes sharing the work folder. Another process (a monitor run on its own) describes and
lists jobs from the state files and stops them by leaving a marker the owning process
notices.

A crash of the owning process costs no attempt and no compute. Each command runs under a
supervisor of its own session (`supervise.py`), which outlives the owner and writes the
command's exit code to the job folder. A backend that finds a job whose owner died (when it
starts on the work folder, or when it describes or lists the job) takes it over, one
process only, and:
- a supervisor still running: follows it to its end, with stops and MaxRuntime as usual;
- an exit code on disk: concludes from it (model packed and published, or the script's
  failure reason), as the dead owner would have;
- nothing started yet (the job waited for a slot, or was staging its inputs): runs it, under
  the same training job name. Nothing ran, so it is the same attempt: the lifecycle above
  sees one training job that took longer to start, not a failure to retry;
- a process that may have started and left nothing (its supervisor killed too, or the owner
  died within the instant between the two): Failed, InternalServerError, which the failure
  rules retry.

A job of `InstanceCount` N (training or processing) runs N such processes, hosts `algo-1`
.. `algo-N` (`hosts.py`; their inputs and checkpoints: `host_files.py`), and all of the
above holds for each host. It succeeds when every host does; the first host to fail fails
it and stops the others.

Processing jobs (CreateProcessingJob) run the same way, in `<work>/_processing/<job>/`
with SageMaker Processing's layout (`processing.py`, `processing_jobs.py`). A notebook job,
the request the sagemaker SDK's NotebookJobStep compiles, runs stoker's notebook runner in
place of SageMaker's notebook scheduler (`stoker.core.notebooks`); its outputs are copied
under its S3OutputPath whether it succeeds or fails (`outputs.py`).

Only what the local rules allow runs (their entrypoint allowlist; by default the training
scripts shipped with stoker); anything else is refused with InvalidRequest before a folder
is made. Each process gets a clean environment, its job folder as working directory and
HOME, and the rules' CPU, memory and open-file limits (container.py says how).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from stoker.adapters.processes import ProcessRef, process_ref, this_process
from stoker.adapters.training import local_state as state
from stoker.adapters.training.container import (
    JobPaths,
    LocalJobRequest,
    failure_reason,
    parse_request,
    refusal,
)
from stoker.adapters.training.host_files import HostFiles
from stoker.adapters.training.hosts import (
    HostGroup,
    adopted,
    child,
    first_failure,
    host_paths,
    not_started,
    start_supervised,
)
from stoker.adapters.training.local_listing import DiskJobs
from stoker.adapters.training.local_state import LocalJob
from stoker.adapters.training.local_support import (
    MARKER_POLL_S,
    PROCESSING_FOLDER,
    Slots,
    job_key,
)
from stoker.adapters.training.outputs import (
    publish_model,
    publish_output_data,
    publish_outputs,
)
from stoker.adapters.training.processing import (
    parse_processing_request,
    processing_failure_reason,
)
from stoker.adapters.training.processing_jobs import ProcessingJobs
from stoker.adapters.training.s3io import S3Folders, S3TransferError
from stoker.adapters.training.source_code_job import with_source_code_command
from stoker.core.clock import Clock, SystemClock
from stoker.core.job_kind import JobKind
from stoker.core.policy import LocalRunRules
from stoker.core.source_code import SourceCodeRefused
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


class LocalProcessBackend(ProcessingJobs):
    """TrainingBackend running `ContainerEntrypoint + ContainerArguments` as local processes.

    max_concurrent: jobs running at once, whatever their InstanceCount; later ones wait,
        InProgress/Starting (default 2).
    stop_grace_s: time between SIGTERM and SIGKILL when stopping (default 10 s).
    checkpoint_period_s: how often running hosts' new checkpoints are saved to their
        CheckpointConfig.S3Uri (default 30 s; also saved as each host ends).
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
        checkpoint_period_s: float = 30.0,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if stop_grace_s < 0:
            raise ValueError(f"stop_grace_s must be >= 0, got {stop_grace_s}")
        if checkpoint_period_s <= 0:
            raise ValueError(f"checkpoint_period_s must be > 0, got {checkpoint_period_s}")
        self._checkpoint_period_s = checkpoint_period_s
        self.calls: Counter[str] = Counter()
        self.work_dir = work_dir
        self._grace_s = stop_grace_s
        self._clock = clock or SystemClock()
        self._slots = Slots(max_concurrent)
        self._jobs: dict[str, LocalJob] = {}
        self._on_disk = {
            JobKind.TRAINING: DiskJobs(work_dir, JobKind.TRAINING),
            JobKind.PROCESSING: DiskJobs(work_dir / PROCESSING_FOLDER, JobKind.PROCESSING),
        }
        self._s3 = S3Folders(region=region, endpoint_url=s3_endpoint)
        self._files = HostFiles(self._s3)
        rules = rules or LocalRunRules()
        if rules.entrypoints is None:
            rules = rules.model_copy(update={"entrypoints": shipped_entrypoints()})
        self.rules = rules

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Create the work folder, and take over the jobs of owners that died: processes
        that run first (they hold their slots already), then waiting jobs, oldest first."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / PROCESSING_FOLDER).mkdir(exist_ok=True)
        # Read as a listing reads them, so the first listing need not read them again.
        look = partial(self._load, take_over=False)
        orphans = [
            job
            for on_disk in self._on_disk.values()
            for job in on_disk.read(lambda _key: False, look).values()
            if not job.status.terminal
        ]
        orphans.sort(key=lambda job: (not job.supervisors, job.creation_time, job.name))
        for job in orphans:
            handed_over = state.orphaned(job)
            if handed_over is not None:
                self._take_over(job, handed_over)

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
        return await self._create(parse_request(request), request)

    async def _create(self, spec: LocalJobRequest, request: dict[str, Any]) -> str:
        refused = refusal(self.rules, spec)
        if refused is not None:
            log.warning("local job refused", job_name=spec.name, kind=spec.kind, reason=refused)
            raise InvalidRequest(refused)
        paths = self._paths(spec.name, spec.kind)
        try:
            paths.root.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise TrainingJobAlreadyExists(spec.name, kind=spec.kind) from exc
        now = self._clock.now()
        job = LocalJob(
            name=spec.name,
            arn=f"arn:aws:sagemaker:local:000000000000:{spec.kind}-job/{spec.name.lower()}",
            kind=spec.kind,
            paths=paths,
            instance_type=spec.instance_type,
            status=_S.IN_PROGRESS,
            secondary="Starting",
            creation_time=now,
            last_modified=now,
            owner=this_process(),
        )
        self._jobs[job_key(spec.name, spec.kind)] = job
        state.save_request(paths, request)
        self._save(job)
        self._start_task(job, self._run(job, spec, request))
        log.info("local job created", job_name=spec.name, kind=spec.kind)
        return job.arn

    async def describe_training_job(self, name: str) -> TrainingJobDescription:
        self.calls["DescribeTrainingJob"] += 1
        return self._describe(name, JobKind.TRAINING)

    def _describe(self, name: str, kind: JobKind) -> TrainingJobDescription:
        job = self._jobs.get(job_key(name, kind)) or self._load(self._paths(name, kind))
        if job is None:
            raise TrainingJobNotFound(name, kind=kind)
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
        rows = [
            job.summary()
            for job in self._all_jobs(JobKind.TRAINING)
            if (status_equals is None or job.status is status_equals)
            and (last_modified_time_after is None or job.last_modified > last_modified_time_after)
            and (not name_contains or name_contains.lower() in job.name.lower())
        ]
        rows.sort(key=lambda row: (row.creation_time, row.name), reverse=True)
        return rows if max_results is None else rows[:max_results]

    def _all_jobs(self, kind: JobKind) -> list[LocalJob]:
        """Every job of `kind`: this backend's, and those other processes left on disk."""
        jobs = {key: job for key, job in self._jobs.items() if job.kind is kind}
        jobs.update(self._on_disk[kind].read(jobs.__contains__, self._load))
        return list(jobs.values())

    async def stop_training_job(self, name: str) -> None:
        self.calls["StopTrainingJob"] += 1
        await self._stop(name, JobKind.TRAINING)

    async def _stop(self, name: str, kind: JobKind) -> None:
        job = self._jobs.get(job_key(name, kind))
        if job is None:
            foreign = self._load(self._paths(name, kind))
            if foreign is None:
                raise TrainingJobNotFound(name, kind=kind)
            if foreign is self._jobs.get(job_key(name, kind)):
                job = foreign  # its owner had died: this backend just took it over
            else:
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

    async def _run(self, job: LocalJob, spec: LocalJobRequest, request: dict[str, Any]) -> None:
        async with self._slots.held():
            job.queued = False
            if job.paths.stop_marker.exists():
                job.stop_requested = True  # asked by another process while the job waited
            if job.stop_requested or job.shutting_down:
                if not job.status.terminal and not job.shutting_down:
                    self._finish(job, _S.STOPPED, "Stopped")
                return
            try:
                self._set(job, _S.IN_PROGRESS, "Downloading")
                await self._files.stage(job.paths, spec, request)
                if spec.source_code:
                    # Every host stages the same drivers channel: the first one's copy says.
                    first = host_paths(job.paths, spec, spec.hosts[0])
                    spec = with_source_code_command(first, spec, self.rules)
            except (OSError, ValueError, S3TransferError, SourceCodeRefused) as exc:
                # Input or checkpoint data that cannot be staged, or a source-code layout
                # the rules refuse: the caller's to fix.
                self._finish(job, _S.FAILED, "Failed", f"ClientError: {exc}"[:1024])
                return
            if job.stop_requested or job.shutting_down:
                self._finish(job, _S.STOPPED, "Stopped")
                return
            job.start_time = self._clock.now()
            # Saved before the processes start: from here on a later owner must not run the
            # command again (see the module docstring).
            job.launching = True
            self._set(job, _S.IN_PROGRESS, "Training")
            codes, timed_out = await self._execute(job, spec)
            await self._conclude(job, spec, codes, timed_out=timed_out)

    async def _follow(self, job: LocalJob, spec: LocalJobRequest) -> None:
        """Processes started by an owner that died: follow them to their end, then conclude
        from the exit codes their supervisors wrote."""
        async with self._slots.held(running=True):
            hosts = []
            for host in spec.hosts:
                ref = job.supervisors.get(host)
                if ref is None:
                    continue  # never started: concluded as lost, below
                hosts.append(adopted(host, host_paths(job.paths, spec, host), ref))
            group = HostGroup(hosts, partial(self._files.save_checkpoints, job.paths, spec))
            try:
                timed_out = await self._watch(job, spec, group)
            finally:
                group.cancel()  # done already, unless the watch itself failed
            await self._conclude(job, spec, dict(group.codes), timed_out=timed_out)

    async def _execute(
        self, job: LocalJob, spec: LocalJobRequest
    ) -> tuple[dict[str, int | None], bool]:
        """Run every host's process to its end; returns (exit code by host, stopped for
        MaxRuntime)."""
        hosts = []
        for host in spec.hosts:
            own = host_paths(job.paths, spec, host)
            process = await start_supervised(own, spec, host, self.rules)
            if process is None:
                hosts.append(not_started(host, own))
                continue
            # Our child, not reaped before we wait for it: its pid names it until then. A
            # start time of 0 (it ended already) reads as gone to a later owner, which then
            # concludes from the exit file.
            job.supervisors[host] = process_ref(process.pid) or ProcessRef(process.pid, 0.0)
            self._save(job)  # each host as it starts: a later owner follows every one
            log.info("local job process started", job_name=job.name, host=host, pid=process.pid)
            hosts.append(child(host, own, process))
        group = HostGroup(hosts, partial(self._files.save_checkpoints, job.paths, spec))
        try:
            timed_out = await self._watch(job, spec, group)
        finally:
            group.cancel()
        return dict(group.codes), timed_out

    async def _watch(self, job: LocalJob, spec: LocalJobRequest, group: HostGroup) -> bool:
        """Wait for every host to end, ending them all on a stop, at MaxRuntime (counted
        from the job's start, which an adopted job passed earlier) or when one host fails;
        True if MaxRuntime did. Saves new checkpoints every checkpoint_period_s meanwhile."""
        deadline = None
        if spec.max_runtime_s:
            elapsed = (self._clock.now() - (job.start_time or self._clock.now())).total_seconds()
            deadline = self._clock.monotonic() + max(0.0, spec.max_runtime_s - elapsed)
        next_save = self._clock.monotonic() + self._checkpoint_period_s
        stop = asyncio.ensure_future(job.stop_event.wait())
        timed_out = False
        try:
            while not group.exited.done():
                timeout = MARKER_POLL_S
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - self._clock.monotonic()))
                await asyncio.wait(
                    {group.exited, group.failed, stop},
                    timeout=timeout,
                    return_when="FIRST_COMPLETED",
                )
                if group.exited.done():
                    break
                if job.paths.stop_marker.exists() and not job.stop_requested:
                    job.stop_requested = True
                    self._set(job, _S.STOPPING, "Stopping")
                if deadline is not None and self._clock.monotonic() >= deadline:
                    timed_out = True
                if stop.done() or job.stop_requested or timed_out or group.failed.done():
                    if group.failed.done() and not group.exited.done():
                        log.info(
                            "a host failed: stopping the others",
                            job_name=job.name,
                            host=group.failed.result(),
                        )
                    await group.terminate(self._grace_s)
                    break
                if self._clock.monotonic() >= next_save:
                    next_save = self._clock.monotonic() + self._checkpoint_period_s
                    await self._files.save_checkpoints(job.paths, spec)
        finally:
            stop.cancel()
        return timed_out

    async def _conclude(
        self,
        job: LocalJob,
        spec: LocalJobRequest,
        codes: dict[str, int | None],
        *,
        timed_out: bool,
    ) -> None:
        """The job's end, from how its hosts' processes ended (by host; None: one left no
        exit code), whether this process started them or took them over."""
        await self._files.save_checkpoints(job.paths, spec)
        self._files.forget(job.paths)
        published: str | None = None
        if spec.notebook or spec.kind is JobKind.PROCESSING:
            # Kept whatever the end: a failed notebook's executed copy shows the failing
            # cell, and SageMaker uploads processing outputs at the end of every job.
            self._set(job, job.status, "Uploading")
            try:
                published = await publish_outputs(self._s3, job.paths, spec)
            except (OSError, S3TransferError) as exc:
                reason = f"InternalServerError: cannot save the outputs: {exc}"[:1024]
                self._finish(job, _S.FAILED, "Failed", reason)
                return
        failed = first_failure(job.paths, spec, codes)
        if job.shutting_down:
            self._finish(job, _S.FAILED, "Failed", _SHUTDOWN_REASON)
        elif timed_out:
            self._finish(job, _S.STOPPED, "MaxRuntimeExceeded")
        elif job.stop_requested:
            self._finish(job, _S.STOPPED, "Stopped")
        elif failed is not None and failed[1] is None:
            self._finish(job, _S.FAILED, "Failed", _LOST_REASON)
        elif failed is not None:
            host, code = failed
            assert code is not None  # None is the case above
            own = host_paths(job.paths, spec, host)
            named = host if spec.instance_count > 1 else None
            if spec.kind is JobKind.PROCESSING:
                reason = processing_failure_reason(own, code, named)
            else:
                reason = failure_reason(own, code, named)
                await self._publish_output_data(job, spec)  # a failure's report, say
            self._finish(job, _S.FAILED, "Failed", reason)
        elif published is not None or spec.kind is JobKind.PROCESSING:
            job.model_artifacts = published
            self._finish(job, _S.COMPLETED, "Completed")
        else:
            self._set(job, _S.IN_PROGRESS, "Uploading")
            try:
                job.model_artifacts = await publish_model(self._s3, job.paths, spec)
                await publish_output_data(self._s3, job.paths, spec)
            except (OSError, S3TransferError) as exc:
                reason = f"InternalServerError: cannot save the model: {exc}"[:1024]
                self._finish(job, _S.FAILED, "Failed", reason)
                return
            self._finish(job, _S.COMPLETED, "Completed")

    async def _publish_output_data(self, job: LocalJob, spec: LocalJobRequest) -> None:
        """A failed training job's /opt/ml/output/data, as SageMaker keeps it; a failure to
        copy it is logged: the job has failed already, for its own reason."""
        if spec.notebook:
            return  # its files went out as the notebook job's outputs
        try:
            await publish_output_data(self._s3, job.paths, spec)
        except (OSError, S3TransferError) as exc:
            log.warning("cannot save the output data", job_name=job.name, error=str(exc))

    # --- taking over the jobs of a dead owner --------------------------------------------

    def _take_over(self, job: LocalJob, handed_over: int) -> LocalJob:
        """Own `job`, whose owner died after hand-over number `handed_over`, and carry it on
        (the module docstring lists the cases). Returns the job as it reads now."""
        if not state.take_over(job, handed_over, this_process()):
            # Another process was first: the state is its to write.
            return self._load(job.paths, take_over=False) or job
        self._jobs[job_key(job.name, job.kind)] = job
        if job.status is _S.STOPPING or job.paths.stop_marker.exists():
            job.stop_requested = True
        request = state.load_request(job.paths)
        parse = parse_request if job.kind is JobKind.TRAINING else parse_processing_request
        try:
            spec = parse(request) if request is not None else None
        except InvalidRequest:
            spec = None
        bound = log.bind(training_job_name=job.name)
        if spec is not None and job.supervisors:
            bound.info(
                "local training job adopted",
                supervisor_pids={host: ref.pid for host, ref in job.supervisors.items()},
            )
            self._save(job)
            self._start_task(job, self._follow(job, spec))
        elif spec is None or job.launching:
            bound.warning("local training job lost with its owner")
            self._finish(job, _S.FAILED, "Failed", _LOST_REASON)
        elif job.stop_requested:
            self._finish(job, _S.STOPPED, "Stopped")
        elif (refused := refusal(self.rules, spec)) is not None:
            self._finish(job, _S.FAILED, "Failed", f"ClientError: {refused}"[:1024])
        else:
            assert request is not None  # spec was parsed from it
            bound.info("local training job queued again: nothing of it ran")
            job.queued = True
            self._set(job, _S.IN_PROGRESS, "Starting")
            self._start_task(job, self._run(job, spec, request))
        return job

    def _start_task(self, job: LocalJob, work: Coroutine[Any, Any, None]) -> None:
        job.task = asyncio.create_task(work, name=f"train:{job.name}")
        job.task.add_done_callback(self._task_done)

    # --- state ---------------------------------------------------------------------------

    def _paths(self, name: str, kind: JobKind = JobKind.TRAINING) -> JobPaths:
        # Lower-cased: SageMaker names are unique regardless of case.
        if kind is JobKind.PROCESSING:
            return JobPaths(self.work_dir / PROCESSING_FOLDER / name.lower())
        return JobPaths(self.work_dir / name.lower())

    def _set(self, job: LocalJob, status: TrainingJobStatus, secondary: str) -> None:
        job.status = status
        job.secondary = secondary
        job.last_modified = self._clock.now()
        self._save(job)

    def _finish(
        self, job: LocalJob, status: TrainingJobStatus, secondary: str, reason: str | None = None
    ) -> None:
        job.failure_reason = reason
        job.end_time = self._clock.now()
        self._set(job, status, secondary)
        log.info(
            "local job ended",
            job_name=job.name,
            kind=job.kind,
            status=status.value,
            failure_reason=reason,
        )

    def _save(self, job: LocalJob) -> None:
        state.save(job)

    def _load(self, paths: JobPaths, *, take_over: bool = True) -> LocalJob | None:
        """The job in `paths` as its state file says; with `take_over`, a job whose owner
        died is taken over first."""
        try:
            job = state.load(paths)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable local job state", path=str(paths.state))
            return None
        if job is None or job.status.terminal or not take_over:
            return job
        handed_over = state.orphaned(job)
        return job if handed_over is None else self._take_over(job, handed_over)

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
