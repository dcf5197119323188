"""The inference router: dynamic batching over static-shape compiled models."""

from stoker.inference.router.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    QueueFull,
    RouterError,
    ShuttingDown,
    UnknownModel,
)
from stoker.inference.router.metrics import RouterMetrics
from stoker.inference.router.policy import (
    Batch,
    BatchingConfig,
    BatchPolicy,
    Decision,
    Pending,
    Priority,
)
from stoker.inference.router.router import (
    DuplicateResult,
    IntentResult,
    Router,
    config_for,
)

__all__ = [
    "Batch",
    "BatchPolicy",
    "BatchingConfig",
    "DeadlineExceeded",
    "Decision",
    "DuplicateResult",
    "IntentResult",
    "InvalidInput",
    "ModelFailed",
    "Pending",
    "Priority",
    "QueueFull",
    "Router",
    "RouterError",
    "RouterMetrics",
    "ShuttingDown",
    "UnknownModel",
    "config_for",
]
