"""Step retry policies as SageMaker Pipelines defines them.

A step's `RetryPolicies` is a list of policies, each naming the exception types it covers:
`Step.SERVICE_FAULT` and `Step.THROTTLING` (`StepRetryPolicy`: the call that starts the job
failed for a moment) and `SageMaker.JOB_INTERNAL_ERROR`, `SageMaker.CAPACITY_ERROR`,
`SageMaker.RESOURCE_LIMIT` (`SageMakerJobStepRetryPolicy`: the job failed, or could not be
created, for a reason a new job may not meet). The first policy naming a failure's type
decides: retry number n (1-based) waits `IntervalSeconds * BackoffRate ** (n - 1)`; retries
stop after `MaxAttempts` retries or once `ExpireAfterMin` minutes have passed since the
step's first attempt started, whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

STEP_EXCEPTION_TYPES = frozenset({"Step.SERVICE_FAULT", "Step.THROTTLING"})
JOB_EXCEPTION_TYPES = frozenset(
    {"SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"}
)
EXCEPTION_TYPES = STEP_EXCEPTION_TYPES | JOB_EXCEPTION_TYPES

MAX_ATTEMPTS_CAP = 20
MAX_EXPIRE_AFTER_MIN = 14_400
DEFAULT_MAX_ATTEMPTS = 5
"""SageMaker's documented default when a policy gives neither limit."""


@dataclass(frozen=True, slots=True)
class StepRetryPolicy:
    """One entry of a step's `RetryPolicies`.

    exception_types: the failure types it covers (see EXCEPTION_TYPES).
    interval_s: wait before the first retry (`IntervalSeconds`, default 1).
    backoff_rate: growth of the wait per retry (`BackoffRate`, default 2.0).
    max_attempts: retries at most (`MaxAttempts`, 1..20), None for no count limit.
    expire_after: no retry starts later than this after the first attempt started
        (`ExpireAfterMin`), None for no time limit.
    """

    exception_types: frozenset[str]
    interval_s: float = 1.0
    backoff_rate: float = 2.0
    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS
    expire_after: timedelta | None = None

    def __post_init__(self) -> None:
        unknown = self.exception_types - EXCEPTION_TYPES
        if unknown or not self.exception_types:
            raise ValueError(
                f"ExceptionType must list some of {', '.join(sorted(EXCEPTION_TYPES))}; "
                f"got {sorted(self.exception_types)}"
            )
        if self.interval_s < 0:
            raise ValueError(f"IntervalSeconds must be >= 0, got {self.interval_s}")
        if self.backoff_rate < 0:
            raise ValueError(f"BackoffRate must be >= 0, got {self.backoff_rate}")
        if self.max_attempts is not None and not 1 <= self.max_attempts <= MAX_ATTEMPTS_CAP:
            raise ValueError(f"MaxAttempts must be 1..{MAX_ATTEMPTS_CAP}, got {self.max_attempts}")
        if self.expire_after is not None and not (
            timedelta(0) < self.expire_after <= timedelta(minutes=MAX_EXPIRE_AFTER_MIN)
        ):
            raise ValueError(
                f"ExpireAfterMin must be 1..{MAX_EXPIRE_AFTER_MIN}, got {self.expire_after}"
            )

    def covers(self, exception_type: str | None) -> bool:
        return exception_type in self.exception_types

    def next_retry_at(
        self, *, retries_done: int, first_started_at: datetime, now: datetime
    ) -> datetime | None:
        """When retry number `retries_done + 1` starts, or None when the policy is spent."""
        if self.max_attempts is not None and retries_done >= self.max_attempts:
            return None
        delay_s = self.interval_s * self.backoff_rate**retries_done
        due = now + timedelta(seconds=delay_s)
        if self.expire_after is not None and due > first_started_at + self.expire_after:
            return None
        return due


def policy_for(
    policies: tuple[StepRetryPolicy, ...], exception_type: str | None
) -> StepRetryPolicy | None:
    """The first policy that covers the failure, or None (the failure is final)."""
    return next((p for p in policies if p.covers(exception_type)), None)


_FAILURE_TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("CapacityError", "InsufficientCapacity", "InsufficientCapacityError"),
        "SageMaker.CAPACITY_ERROR",
    ),
    "ResourceLimitExceeded": "SageMaker.RESOURCE_LIMIT",
    **dict.fromkeys(("InternalServerError", "InternalFailure"), "SageMaker.JOB_INTERNAL_ERROR"),
    **dict.fromkeys(
        ("ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded"),
        "Step.THROTTLING",
    ),
    **dict.fromkeys(("ServiceUnavailable", "ServiceUnavailableException"), "Step.SERVICE_FAULT"),
}


def failure_type_for(code: str | None, category: str | None) -> str | None:
    """The retry policy exception type of a job's failure, from its API error code or its
    FailureReason category (the word before the first colon); None when no policy type
    covers it (an algorithm error, a bad request)."""
    for key in (code, category):
        if key is not None and key in _FAILURE_TYPES:
            return _FAILURE_TYPES[key]
    return None
