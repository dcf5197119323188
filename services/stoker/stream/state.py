"""What the app's agent, views and tests share: the Faust app, its tables, its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from stoker.stream.config import StreamSettings
from stoker.stream.engine import ScoringEngine


@dataclass(slots=True)
class StreamCounters:
    """Pairs handled by this process since it started."""

    scored: int = 0
    served_from_table: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class DuplicateApp:
    """The Faust app and what its views and tests read."""

    app: faust.App
    settings: StreamSettings
    engine: ScoringEngine
    scores: Any
    """faust Table: pair id (bytes) -> StoredScore JSON (bytes)."""
    pairs_per_window: Any
    """faust tumbling WindowWrapper: "product_type@partition" -> pairs."""
    duplicates_per_window: Any
    """faust tumbling WindowWrapper: "product_type@partition" -> pairs scored duplicate."""
    counters: StreamCounters = field(default_factory=StreamCounters)
    agent: Any = None
