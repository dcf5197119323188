"""SageMaker training job names derived from (job id, attempt).

The name is the launch's idempotency key: a launcher that crashed after calling
CreateTrainingJob derives the same name again and finds the job instead of starting a
second one. So the mapping must be deterministic, never give two (job id, attempt) pairs the
same name, and always produce a valid name (`^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`).

Two shapes, told apart by a double dash:
- `<job id>-<attempt>` when the job id is already lower-case letters, digits and single
  dashes, and the result fits: readable, and the common case;
- `<sanitised prefix>--<hash>-<attempt>` otherwise, where the hash covers the exact job id.
A readable name never contains `--` and a hashed one always does, so the two shapes cannot
collide; within each, the attempt is the text after the last dash. Names stay unique even if
compared case-insensitively, since only lower-case ids keep their own spelling.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

MAX_NAME_LENGTH = 63
MAX_ATTEMPT = 999_999
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_HASH_CHARS = 12
# Matched with fullmatch: a `$` anchor would let a final newline through.
_READABLE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_INVALID = re.compile(r"[^a-z0-9]+")


def training_job_name(job_id: str, attempt: int) -> str:
    """The TrainingJobName for launch attempt `attempt` (0..999999) of job `job_id`."""
    if not job_id:
        raise ValueError("job_id must not be empty")
    if not 0 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"attempt must be within 0..{MAX_ATTEMPT}, got {attempt}")
    suffix = f"-{attempt}"
    if _READABLE.fullmatch(job_id) and len(job_id) + len(suffix) <= MAX_NAME_LENGTH:
        return job_id + suffix
    digest = hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    room = MAX_NAME_LENGTH - len(suffix) - len(digest) - 2
    prefix = _INVALID.sub("-", job_id.lower())[:room].strip("-") or "job"
    return f"{prefix}--{digest}{suffix}"


JOB_ID_TAG = "stoker:job-id"
"""The tag stoker adds to every CreateTrainingJob request, valued with the job id: a training
job seen in SageMaker (the console, a bill, a state-change event) names its stoker job."""
MAX_TAGS = 50
"""SageMaker's limit on the tags of one training job."""


def tag_problems(request: Mapping[str, Any], field: str = "training") -> dict[str, str]:
    """What stops stoker from adding its tag to `request`'s Tags, by field (empty if none): a
    tag of the user's under stoker's key. (The count is a size limit: `core.spec_limits`.)
    `field`: the job spec's field holding the request."""
    tags = request.get("Tags")
    if not isinstance(tags, list):
        return {}
    if any(isinstance(tag, Mapping) and tag.get("Key") == JOB_ID_TAG for tag in tags):
        return {f"{field}.Tags": f"the key {JOB_ID_TAG!r} is stoker's: it holds the job id"}
    return {}


def with_job_id_tag(tags: list[Any], job_id: str) -> list[Any]:
    """`tags` with stoker's tag added (replacing one of the user's under its key). A request
    stored before submissions were checked may already hold MAX_TAGS tags: then the tag is
    left out, since SageMaker would refuse the request, and the job is still found by name."""
    own = [t for t in tags if not (isinstance(t, Mapping) and t.get("Key") == JOB_ID_TAG)]
    if len(own) >= MAX_TAGS:
        return own
    return [*own, {"Key": JOB_ID_TAG, "Value": job_id}]
