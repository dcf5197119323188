"""Domain errors. Whether an error is worth retrying is data on its class, not call-site logic."""

from __future__ import annotations


class StokerError(Exception):
    """Base of every error stoker raises on purpose."""

    retriable: bool = False


class ConfigurationError(StokerError):
    """A setting is missing or malformed; the process must not start."""


class InfrastructureUnavailable(StokerError):
    """A broker, table or API could not be reached; worth retrying with backoff."""

    retriable = True


class JobNotFound(StokerError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")
        self.job_id = job_id


class VersionConflict(StokerError):
    """Another writer moved the job first; re-read and decide again."""

    def __init__(self, job_id: str, expected: int, actual: int | None) -> None:
        super().__init__(f"job {job_id!r}: expected version {expected}, store has {actual}")
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class IllegalTransition(StokerError):
    def __init__(self, job_id: str, from_status: str, to_status: str) -> None:
        super().__init__(f"job {job_id!r}: {from_status} -> {to_status} is not allowed")
        self.job_id = job_id
        self.from_status = from_status
        self.to_status = to_status


class EventRejected(StokerError):
    """An event could not be decoded or failed schema validation. Goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ItemTooLarge(StokerError):
    """A record is larger than the store can hold in one item; `field` names the part of
    the submission that makes it so (e.g. `training.HyperParameters`)."""

    def __init__(
        self, field: str, size_bytes: int, limit_bytes: int, *, what: str = "the job"
    ) -> None:
        super().__init__(
            f"{what} is {size_bytes} bytes, over the store's {limit_bytes}; most of it is {field}"
        )
        self.field = field
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        self.what = what
