"""Step caching: a job step whose resolved arguments equal those of a successful run of the
same step of the same pipeline, no older than the step's `ExpireAfter`, reuses that run's
properties instead of running again (SageMaker reports it as a cache hit)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class CachedRun:
    """A successful step run another execution may reuse."""

    execution_id: str
    ended_at: datetime
    properties: Mapping[str, Any]


def cache_key(pipeline_name: str, step_name: str, step_type: str, arguments: Any) -> str:
    """A digest of everything a cache hit must match, in a canonical JSON form."""
    canonical = orjson.dumps(
        {"pipeline": pipeline_name, "step": step_name, "type": step_type, "arguments": arguments},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def fresh(run: CachedRun | None, expire_after: timedelta | None, now: datetime) -> bool:
    """Whether `run` may be reused now (no ExpireAfter: no age limit)."""
    if run is None:
        return False
    return expire_after is None or now - run.ended_at <= expire_after
