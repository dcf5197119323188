"""One training attempt of a launch: its number, name and instance type, the request that
starts it, and the span that traces it."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from stoker.core.job import JobRecord
from stoker.core.job_kind import instance_type_of, kind_of, request_of, with_instance_type
from stoker.core.naming import training_job_name, with_job_id_tag
from stoker.telemetry import tracing


@dataclass(frozen=True, slots=True)
class Attempt:
    """The training attempt a launch makes: its number, name and instance type."""

    attempt: int
    training_job_name: str
    instance_type: str

    @classmethod
    def of_launching(cls, job: JobRecord) -> Attempt:
        """The attempt a job left in Launching (by a crash) was making."""
        name = job.details.get("training_job_name")
        return cls(
            job.attempt,
            name if isinstance(name, str) else training_job_name(job.job_id, job.attempt),
            launch_instance_type(job),
        )

    def details(self) -> dict[str, Any]:
        return {"instance_type": self.instance_type, "training_job_name": self.training_job_name}


def build_request(job: JobRecord, name: str, instance_type: str) -> dict[str, Any]:
    """The CreateTrainingJob (or, for a job of kind processing, CreateProcessingJob) request
    of one attempt: `name` (one per attempt) on `instance_type` (a capacity fallback may
    have changed it).

    The spec's request is used unchanged otherwise, but for the `stoker:job-id` tag
    (`with_job_id_tag`). CheckpointConfig stays the same across attempts, so a retried
    attempt resumes from the last checkpoint.
    """
    kind = kind_of(job.spec)
    request = with_instance_type(kind, request_of(job.spec), instance_type)
    request[kind.name_field] = name
    request["Tags"] = with_job_id_tag(list(request.get("Tags", [])), job.job_id)
    return request


def launch_span(job: JobRecord, launch: Attempt) -> AbstractContextManager[object]:
    """A span around an attempt's launch, in the job's trace, when tracing is on."""
    if not tracing.enabled():
        return nullcontext()
    return tracing.span(
        "stoker.job.launch",
        parent=job.details.get("traceparent"),
        attributes={
            "job.id": job.job_id,
            "job.attempt": launch.attempt,
            "sagemaker.training_job_name": launch.training_job_name,
        },
    )


def launch_instance_type(job: JobRecord) -> str:
    """The instance type the job's next launch uses: the one chosen for it (a capacity
    fallback may have changed it), else its spec's."""
    chosen = job.details.get("instance_type")
    if isinstance(chosen, str) and chosen:
        return chosen
    return instance_type_of(job.spec)
