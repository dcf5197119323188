"""Which targets a job notifies: its spec's, its owner's defaults, the global defaults,
each once; the fallback when that leaves none."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError

from stoker.core.notification import ConsoleTarget, FileTarget, Target
from stoker.core.spec import NotificationTarget
from stoker.notifier.config import NotifySettings
from stoker.ports.ledger import target_key

log = structlog.get_logger("stoker.notifier")

_SPEC_TARGET = TypeAdapter[NotificationTarget](NotificationTarget)


def spec_targets(spec: dict[str, Any]) -> list[Target]:
    """The `notify` list of a stored JobSpec; an unreadable item is logged and skipped."""
    out: list[Target] = []
    for index, raw in enumerate(spec.get("notify") or []):
        try:
            out.append(_SPEC_TARGET.validate_python(raw))
        except ValidationError as exc:
            log.warning(
                "unreadable notify target skipped",
                index=index,
                errors=exc.error_count(),
            )
    return out


def resolve(
    own: Sequence[Target], owner: str, settings: NotifySettings, fallback_file: str
) -> list[Target]:
    """The job's own targets, then the owner's and the global defaults, without repeats."""
    chosen = _unique([*own, *settings.owner_targets.get(owner, []), *settings.default_targets])
    if chosen:
        return chosen
    if settings.fallback == "console":
        return [ConsoleTarget()]
    if settings.fallback == "file":
        return [FileTarget(path=fallback_file)]
    return []


def _unique(targets: Iterable[Target]) -> list[Target]:
    seen: set[str] = set()
    out: list[Target] = []
    for target in targets:
        key = target_key(target)
        if key not in seen:
            seen.add(key)
            out.append(target)
    return out
