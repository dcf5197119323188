"""Errors the router answers with. Each carries the HTTP status it maps to, as data."""

from __future__ import annotations

from stoker.core.errors import StokerError


class RouterError(StokerError):
    """Base of every error a request to the router can end with."""

    http_status: int = 500
    reason: str = "internal"


class QueueFull(RouterError):
    """The model's bounded queue is full: rejected at once instead of queueing longer."""

    http_status = 429
    reason = "queue-full"
    retriable = True

    def __init__(self, model: str, capacity: int) -> None:
        super().__init__(f"queue of model {model!r} is full ({capacity} requests waiting)")
        self.model = model
        self.capacity = capacity


class ShuttingDown(RouterError):
    """The router is draining (SIGTERM) or not started: another replica should answer."""

    http_status = 503
    reason = "draining"
    retriable = True

    def __init__(self, detail: str = "router is draining and accepts no new requests") -> None:
        super().__init__(detail)


class DeadlineExceeded(RouterError):
    """The request's deadline passed while it waited; it was never run."""

    http_status = 504
    reason = "deadline"
    retriable = True

    def __init__(self, model: str, waited_s: float) -> None:
        super().__init__(f"deadline passed after {waited_s * 1000:.1f} ms in the {model!r} queue")
        self.model = model
        self.waited_s = waited_s


class ModelFailed(RouterError):
    """The backend raised while running a batch; every request of the batch gets this."""

    http_status = 500
    reason = "model-error"

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model {model!r} failed: {detail}")
        self.model = model


class UnknownModel(RouterError):
    http_status = 404
    reason = "unknown-model"

    def __init__(self, model: str) -> None:
        super().__init__(f"no model {model!r} is loaded")
        self.model = model


class InvalidInput(RouterError):
    """Input the router cannot run (empty text); the API answers 422 naming the field."""

    http_status = 422
    reason = "invalid-input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
