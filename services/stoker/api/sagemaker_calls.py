"""What every SageMaker operation handler shares: the call (its body, the caller and the
team it is scoped to), SageMaker's error, paging and the creation-time filters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from stoker.core.auth import Principal, Role
from stoker.core.errors import StokerError
from stoker.pipelines.operations import PipelineOperations

MAX_PAGE = 100


class SageMakerError(StokerError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class Call:
    def __init__(self, ops: PipelineOperations, principal: Principal, body: dict[str, Any]):
        self.ops = ops
        self.principal = principal
        self.body = body

    @property
    def scope(self) -> str | None:
        return None if self.principal.role is Role.ADMIN else self.principal.team


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


def in_range(created: datetime, body: dict[str, Any]) -> bool:
    after, before = body.get("CreatedAfter"), body.get("CreatedBefore")
    stamp = created.timestamp()
    if isinstance(after, (int, float)) and stamp <= after:
        return False
    return not (isinstance(before, (int, float)) and stamp >= before)


def page(items: list[Any], body: dict[str, Any]) -> tuple[list[Any], str | None]:
    """A page from the offset `NextToken` carries (opaque to callers, as on SageMaker)."""
    token = body.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError as exc:
        raise SageMakerError("ValidationException", f"NextToken: not a token: {token!r}") from exc
    size = min(int(body.get("MaxResults") or MAX_PAGE), MAX_PAGE)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def with_token(answer: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        answer["NextToken"] = token
    return answer
