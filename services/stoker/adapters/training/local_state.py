"""What a local training job leaves on disk, and who owns it.

`state.json` is the job's state, rewritten atomically on every change by its owner: the
stoker process that created the job, or the one that took it over when that one died. It
names the supervisor of each host's command (pid and start time) once one was started, and
`launching` from just before, so a later owner can tell "nothing ran" from "something may
run". `request.json` keeps the request, so a later owner can run a job nothing ran.

Ownership changes hands through `owner.<n>` files: a process takes a job over from a dead
owner by creating the next number, atomically (a hard link, which fails if the name
exists), so of two processes finding the same dead owner exactly one gets the job. The
owner is the highest-numbered file's process, or the creator named in `state.json` when
there is none.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stoker.adapters.processes import ProcessRef, is_alive, pid_exists
from stoker.adapters.training.container import JobPaths
from stoker.adapters.training.supervise import write_atomically
from stoker.core.job_kind import JobKind
from stoker.ports.training import (
    TrainingJobDescription,
    TrainingJobStatus,
    TrainingJobSummary,
)

_OWNER_PREFIX = "owner."


def _ref_to_state(ref: ProcessRef | None) -> dict[str, Any] | None:
    return None if ref is None else {"pid": ref.pid, "started": ref.create_time}


def _ref_from_state(raw: object) -> ProcessRef | None:
    if not isinstance(raw, dict):
        return None
    return ProcessRef(int(raw["pid"]), float(raw["started"]))


def _supervisors_from_state(data: dict[str, Any]) -> dict[str, ProcessRef]:
    found: dict[str, ProcessRef] = {}
    raw = data.get("supervisors")
    if isinstance(raw, dict):
        for host, value in raw.items():
            ref = _ref_from_state(value)
            if ref is not None:
                found[str(host)] = ref
    else:
        # Written before jobs had several hosts: one supervisor, host algo-1's.
        single = _ref_from_state(data.get("supervisor"))
        if single is not None:
            found["algo-1"] = single
    return found


@dataclass
class LocalJob:
    """One job as its owner keeps it (the persisted part is `to_state`)."""

    name: str
    arn: str
    paths: JobPaths
    instance_type: str
    status: TrainingJobStatus
    secondary: str
    creation_time: datetime
    last_modified: datetime
    owner: ProcessRef
    kind: JobKind = JobKind.TRAINING
    failure_reason: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    model_artifacts: str | None = None
    launching: bool = False
    """A supervisor is being (or was) started: from here on the command may run."""
    supervisors: dict[str, ProcessRef] = field(default_factory=dict)
    """The supervisor of each host's command, by host (`algo-1`, ...), once started."""
    legacy_owner: bool = False
    """Written by a version that stored the owner's pid only."""
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
            "kind": self.kind.value,
            "instance_type": self.instance_type,
            "status": self.status.value,
            "secondary": self.secondary,
            "failure_reason": self.failure_reason,
            "creation_time": iso(self.creation_time),
            "last_modified": iso(self.last_modified),
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "model_artifacts": self.model_artifacts,
            "owner_pid": self.owner.pid,
            "owner_started": self.owner.create_time,
            "launching": self.launching,
            "supervisors": {
                host: _ref_to_state(ref) for host, ref in sorted(self.supervisors.items())
            },
        }

    @classmethod
    def from_state(cls, paths: JobPaths, data: dict[str, Any]) -> LocalJob:
        def parse(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        created = datetime.fromisoformat(data["creation_time"])
        started = data.get("owner_started")
        return cls(
            name=data["name"],
            arn=data["arn"],
            kind=JobKind(data.get("kind") or JobKind.TRAINING),
            paths=paths,
            instance_type=data["instance_type"],
            status=TrainingJobStatus(data["status"]),
            secondary=data["secondary"],
            creation_time=created,
            last_modified=parse(data["last_modified"]) or created,
            owner=ProcessRef(int(data.get("owner_pid") or 0), float(started or 0.0)),
            legacy_owner=started is None,
            failure_reason=data.get("failure_reason"),
            start_time=parse(data.get("start_time")),
            end_time=parse(data.get("end_time")),
            model_artifacts=data.get("model_artifacts"),
            launching=bool(data.get("launching")),
            supervisors=_supervisors_from_state(data),
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
            kind=self.kind,
        )


def save(job: LocalJob) -> None:
    write_atomically(job.paths.state, json.dumps(job.to_state()))


def load(paths: JobPaths) -> LocalJob | None:
    """The job's state; None when the folder holds none yet. Raises ValueError or OSError
    when it cannot be read."""
    try:
        data = json.loads(paths.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return LocalJob.from_state(paths, data)


def save_request(paths: JobPaths, request: dict[str, Any]) -> None:
    # Only the owner reads it back; it may carry the job's Environment.
    fd = os.open(paths.request, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(request, out)


def load_request(paths: JobPaths) -> dict[str, Any] | None:
    """The job's request; None when it was never saved (an older version's job)."""
    try:
        loaded: dict[str, Any] = json.loads(paths.request.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded


def exit_code(paths: JobPaths) -> int | None:
    """The command's exit code as its supervisor recorded it; None when it has not ended
    (or its supervisor was killed first)."""
    record = exit_record(paths)
    return None if record is None else record[0]


def exit_record(paths: JobPaths) -> tuple[int, float] | None:
    """The command's exit code and when it ended (epoch seconds), as its supervisor
    recorded them; None when it has not ended (or its supervisor was killed first)."""
    try:
        data = json.loads(paths.exit_file.read_text(encoding="utf-8"))
        return int(data["exit_code"]), float(data.get("at") or 0.0)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _owner_files(paths: JobPaths) -> list[tuple[int, Path]]:
    found = []
    for entry in paths.root.glob(f"{_OWNER_PREFIX}*"):
        number = entry.name[len(_OWNER_PREFIX) :]
        if number.isdigit():
            found.append((int(number), entry))
    return sorted(found)


def current_owner(job: LocalJob) -> tuple[int, ProcessRef | None]:
    """The number of the last hand-over (0: none yet) and the owner now (None: unreadable)."""
    files = _owner_files(job.paths)
    if not files:
        return 0, job.owner
    number, path = files[-1]
    try:
        pid, started = path.read_text(encoding="utf-8").split()
        return number, ProcessRef(int(pid), float(started))
    except (OSError, ValueError):
        return number, None


def orphaned(job: LocalJob) -> int | None:
    """When the process owning the job is gone: the number of the last hand-over (0: none
    yet), to take the job over after. None while the owner runs."""
    number, owner = current_owner(job)
    if owner is None:
        return number
    alive = pid_exists(owner.pid) if number == 0 and job.legacy_owner else is_alive(owner)
    return None if alive else number


def take_over(job: LocalJob, after: int, me: ProcessRef) -> bool:
    """Become the job's owner after hand-over number `after`; False when another process
    did first."""
    tmp = job.paths.root / f".owner.{me.pid}.tmp"
    tmp.write_text(f"{me.pid} {me.create_time!r}\n", encoding="utf-8")
    try:
        os.link(tmp, job.paths.root / f"{_OWNER_PREFIX}{after + 1}")
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    job.owner = me
    job.legacy_owner = False
    return True
