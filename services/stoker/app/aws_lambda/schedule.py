"""Events that are not a stream batch: EventBridge schedules, and what to say about others."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEDULED_DETAIL_TYPE = "Scheduled Event"


def is_scheduled_event(event: Mapping[str, Any]) -> bool:
    """An EventBridge schedule's event (a rule with a rate or cron expression)."""
    return event.get("source") == "aws.events" and event.get("detail-type") == (
        SCHEDULED_DETAIL_TYPE
    )


def unexpected_event(event: Mapping[str, Any], expected: str) -> ValueError:
    """The error for an event a handler is not wired to, naming what it looked at."""
    shown = {key: event.get(key) for key in ("source", "detail-type") if key in event}
    if "Records" in event:
        shown["Records"] = "..."
    return ValueError(f"event: expected {expected}; got {shown or sorted(event)[:5]}")
