"""The training jobs the monitor follows, by name, with an index by job id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from stoker.core.job_kind import JobKind
from stoker.ports.training import TrainingJobStatus

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class Followed:
    job_id: str
    attempt: int = 0
    stop_wanted: bool = False
    stop_sent: bool = False
    listed: TrainingJobStatus | None = None
    kind: JobKind = JobKind.TRAINING


class FollowedJobs:
    """Followed training jobs by name, with an index by job id: a job's end must find its
    names without scanning every followed job (that scan made each end cost O(jobs))."""

    def __init__(self) -> None:
        self._by_name: dict[str, Followed] = {}
        self._names: dict[str, set[str]] = {}
        self._processing = 0

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Followed | None:
        return self._by_name.get(name)

    def follow(self, name: str, followed: Followed) -> Followed:
        """Follow `name` unless it is followed already; returns what is followed."""
        current = self._by_name.get(name)
        if current is not None:
            return current
        self._by_name[name] = followed
        self._processing += followed.kind is JobKind.PROCESSING
        self._names.setdefault(followed.job_id, set()).add(name)
        return followed

    def pop(self, name: str) -> None:
        followed = self._by_name.pop(name, None)
        if followed is None:
            return
        self._processing -= followed.kind is JobKind.PROCESSING
        names = self._names.get(followed.job_id)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[followed.job_id]

    def names_of(self, job_id: str) -> list[str]:
        return list(self._names.get(job_id, ()))

    def items(self) -> list[tuple[str, Followed]]:
        return list(self._by_name.items())

    def names(self) -> list[str]:
        return list(self._by_name)

    def any_processing(self) -> bool:
        """Whether a processing job is followed: only then is a pass's listing of processing
        jobs worth its API call."""
        return self._processing > 0


def remember_newest(memory: dict[K, V], key: K, value: V, limit: int) -> None:
    """Put `key` last in `memory` (a dict keeps insertion order), dropping the oldest entry
    beyond `limit`: a bounded memory of what was seen most recently."""
    memory.pop(key, None)
    memory[key] = value
    if len(memory) > limit:
        del memory[next(iter(memory))]
