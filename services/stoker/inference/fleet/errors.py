"""What can go wrong serving a model, each with the HTTP status the endpoint answers and
the SageMaker runtime error code a boto3 caller sees."""

from __future__ import annotations

from stoker.core.errors import StokerError


class FleetError(StokerError):
    http_status = 500
    code = "InternalFailure"
    """`x-amzn-ErrorType` of the runtime route: botocore's `ClientError` code."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model


class BadModelName(FleetError):
    http_status = 400
    code = "ValidationError"

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(model, f"model name {model!r}: {problem}")


class ModelNotFound(FleetError):
    """No artifact by that name under the prefix."""

    http_status = 404
    code = "ValidationError"

    def __init__(self, model: str, where: str) -> None:
        super().__init__(model, f"model {model!r} not found under {where}")


class ModelNotLoaded(FleetError):
    """The container API's invoke, get or delete of a model not in memory."""

    http_status = 404
    code = "ValidationError"

    def __init__(self, model: str) -> None:
        super().__init__(model, f"model {model!r} is not loaded")


class AlreadyLoaded(FleetError):
    http_status = 409
    code = "ValidationError"

    def __init__(self, model: str) -> None:
        super().__init__(model, f"model {model!r} is already loaded")


class ModelTooLarge(FleetError):
    """The model cannot fit in a tier even after evicting everything evictable (507, after
    which SageMaker unloads unused models and tries again)."""

    http_status = 507
    code = "ServiceUnavailable"

    def __init__(self, model: str, tier: str, detail: str) -> None:
        super().__init__(model, f"model {model!r} does not fit in the {tier} cache: {detail}")
        self.tier = tier


class ModelLoadFailed(FleetError):
    """The artifact is there but cannot be read as a model (corrupt, wrong format), or the
    store could not be read. Other models keep being served."""

    http_status = 500
    code = "ModelError"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(model, f"model {model!r} could not be loaded: {reason}")
        self.reason = reason


class InvalidPayload(FleetError):
    http_status = 400
    code = "ValidationError"

    def __init__(self, model: str, field: str, problem: str) -> None:
        super().__init__(model, f"invalid request for model {model!r}: {field}: {problem}")
        self.field = field
        self.problem = problem


class PredictionFailed(FleetError):
    """The model raised while predicting (a bug or a bad state of that model only)."""

    http_status = 500
    code = "ModelError"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(model, f"model {model!r} failed to predict: {reason}")
