"""`ListPipelineExecutions`: a pipeline's executions a page at a time, over the store's pages.

Sorted by `CreationTime` (SageMaker's default) either way, a page is one or a few reads of
the store's (start time, execution id) index: `NextToken` is the store's cursor, and
`CreatedBefore` / `CreatedAfter` start the reading at one bound and end it at the other.
Sorted by `PipelineExecutionArn`, an order no store index keeps (execution ids are random),
the pipeline's executions are read whole and the token carries the last ARN shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stoker.api.sagemaker_calls import MAX_PAGE, Call, SageMakerError, in_range, with_token
from stoker.core.cursors import InvalidCursor, decode_cursor, encode_cursor
from stoker.core.pipelines.records import StoredExecution

SORT_BY = ("CreationTime", "PipelineExecutionArn")
SORT_ORDER = ("Descending", "Ascending")


def execution_summary(stored: StoredExecution) -> dict[str, Any]:
    state = stored.state
    answer: dict[str, Any] = {
        "PipelineExecutionArn": state.identity.execution_arn,
        "StartTime": state.started_at,
        "PipelineExecutionStatus": str(state.status),
        "PipelineExecutionDisplayName": state.identity.execution_id,
    }
    if state.failure_reason is not None:
        answer["PipelineExecutionFailureReason"] = state.failure_reason
    return answer


async def list_executions(call: Call) -> dict[str, Any]:
    body = call.body
    sort_by = _choice(body, "SortBy", SORT_BY)
    oldest_first = _choice(body, "SortOrder", SORT_ORDER) == "Ascending"
    size = _max_results(body)
    token = body.get("NextToken") or None
    if sort_by == "PipelineExecutionArn":
        shown, token = await _by_arn(call, size, token, oldest_first=oldest_first)
    else:
        try:
            found = await call.ops.execution_page(
                body["PipelineName"],
                team=call.scope,
                limit=size,
                cursor=token,
                oldest_first=oldest_first,
                started_after=_moment(body, "CreatedAfter"),
                started_before=_moment(body, "CreatedBefore"),
            )
        except InvalidCursor as exc:
            raise _bad_token(token) from exc
        shown, token = found.items, found.next_cursor
    summaries = [execution_summary(e) for e in shown]
    return with_token({"PipelineExecutionSummaries": summaries}, token)


async def _by_arn(
    call: Call, size: int, token: str | None, *, oldest_first: bool
) -> tuple[list[StoredExecution], str | None]:
    after = _last_arn(token) if token is not None else None
    listed = [
        e
        for e in await call.ops.list_executions(call.body["PipelineName"], team=call.scope)
        if in_range(e.state.started_at, call.body)
    ]
    listed.sort(key=_arn, reverse=not oldest_first)
    if after is not None:
        listed = [e for e in listed if (_arn(e) > after if oldest_first else _arn(e) < after)]
    shown = listed[:size]
    more = len(listed) > size
    return shown, (encode_cursor({"arn": _arn(shown[-1])}) if more else None)


def _arn(stored: StoredExecution) -> str:
    return stored.state.identity.execution_arn


def _last_arn(token: str) -> str:
    try:
        arn = decode_cursor(token).get("arn")
    except InvalidCursor as exc:
        raise _bad_token(token) from exc
    if not isinstance(arn, str):
        raise _bad_token(token)
    return arn


def _bad_token(token: str | None) -> SageMakerError:
    return SageMakerError(
        "ValidationException",
        f"NextToken: not a token of this listing: {str(token)[:40]!r}; pass the NextToken "
        "of the previous page, with the same PipelineName, SortBy and SortOrder",
    )


def _choice(body: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    value = body.get(field, allowed[0])
    if value not in allowed:
        raise SageMakerError(
            "ValidationException", f"{field}: {value!r} is not one of {', '.join(allowed)}"
        )
    return str(value)


def _max_results(body: dict[str, Any]) -> int:
    value = body.get("MaxResults", MAX_PAGE)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE:
        raise SageMakerError(
            "ValidationException",
            f"MaxResults: {value!r} is not a whole number from 1 to {MAX_PAGE}",
        )
    return value


def _moment(body: dict[str, Any], field: str) -> datetime | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SageMakerError("ValidationException", f"{field}: {value!r} is not a timestamp")
    return datetime.fromtimestamp(value, UTC)
