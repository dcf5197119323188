"""Admission control: per instance type concurrency caps mirroring the account quota.

Jobs over the cap wait, highest priority first and first-come first within a priority,
instead of failing with ResourceLimitExceeded. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Admitted:
    job_id: str
    instance_type: str
    priority: int = 0
    order: int = field(default=0, compare=False)
    """Its place in line among jobs of its priority (`requeue` puts it back there)."""


@dataclass
class AdmissionControl:
    """Slots per instance type. `caps` maps instance type to its cap; others use `default_cap`
    (None means no cap)."""

    caps: Mapping[str, int] = field(default_factory=dict)
    default_cap: int | None = None
    _holding: dict[str, str] = field(default_factory=dict)  # job id -> instance type
    _used: dict[str, int] = field(default_factory=dict)
    _waiting: list[tuple[int, int, str, str]] = field(default_factory=list)
    _queued: set[str] = field(default_factory=set)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for instance_type, cap in self.caps.items():
            if cap < 0:
                raise ValueError(f"cap for {instance_type} must be >= 0, got {cap}")
        if self.default_cap is not None and self.default_cap < 0:
            raise ValueError(f"default_cap must be >= 0 or None, got {self.default_cap}")

    def cap(self, instance_type: str) -> int | None:
        return self.caps.get(instance_type, self.default_cap)

    def occupy(self, job_id: str, instance_type: str) -> None:
        """Count a job that already holds a slot (e.g. found running at start-up)."""
        if job_id in self._holding:
            return
        self._holding[job_id] = instance_type
        self._used[instance_type] = self._used.get(instance_type, 0) + 1

    def offer(self, job_id: str, instance_type: str, priority: int = 0) -> None:
        """Queue a job for a slot; offering a job twice has no effect."""
        if job_id in self._queued or job_id in self._holding:
            return
        self._queued.add(job_id)
        heapq.heappush(self._waiting, (-priority, next(self._seq), job_id, instance_type))

    def release(self, job_id: str) -> None:
        """Free the job's slot (it ended or is waiting for a retry)."""
        instance_type = self._holding.pop(job_id, None)
        if instance_type is not None:
            # Never below zero: `sync` may have set a count that did not include this job.
            self._used[instance_type] = max(0, self._used[instance_type] - 1)
        self._queued.discard(job_id)

    def admit(self) -> list[Admitted]:
        """Take every waiting job that fits now, in priority then FIFO order.

        A job blocked by its own instance type does not hold up jobs of other types.
        """
        admitted: list[Admitted] = []
        blocked: list[tuple[int, int, str, str]] = []
        while self._waiting:
            entry = heapq.heappop(self._waiting)
            negated_priority, _, job_id, instance_type = entry
            if job_id not in self._queued:
                continue  # released while waiting
            cap = self.cap(instance_type)
            if cap is not None and self._used.get(instance_type, 0) >= cap:
                blocked.append(entry)
                continue
            self._queued.discard(job_id)
            self.occupy(job_id, instance_type)
            admitted.append(Admitted(job_id, instance_type, -negated_priority, entry[1]))
        for entry in blocked:
            heapq.heappush(self._waiting, entry)
        return admitted

    def forget(self, job_id: str) -> None:
        """Stop tracking a job whose launch is over, leaving the count as it is: where the
        count is kept elsewhere (`sync`), the job's end may reach another launcher, which
        then frees its slot, and this one must not keep the job as if it still launched."""
        self._holding.pop(job_id, None)

    def requeue(self, admitted: Admitted) -> None:
        """Put an admitted job back in line where it was (its slot was not to be had after
        all): it frees the slot it was counted in."""
        self.release(admitted.job_id)
        self._queued.add(admitted.job_id)
        entry = (-admitted.priority, admitted.order, admitted.job_id, admitted.instance_type)
        heapq.heappush(self._waiting, entry)

    def sync(self, instance_type: str, in_use: int) -> None:
        """Take the count of slots in use from where the caps are kept (the job store, which
        counts every launcher's): `admit` admits up to the cap minus this."""
        self._used[instance_type] = in_use

    def waiting_types(self) -> set[str]:
        """The instance types of the jobs waiting for a slot."""
        return {entry[3] for entry in self._waiting if entry[2] in self._queued}

    def in_use(self, instance_type: str) -> int:
        return self._used.get(instance_type, 0)

    @property
    def waiting(self) -> int:
        return len(self._queued)
