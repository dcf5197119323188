"""Event bus adapters behind `stoker.ports.bus.EventBus`.

- `MemoryBus`: in-process, for tests of code above the port;
- `SqliteLogBus`: the embedded durable log (one SQLite file, survives kill -9);
- `KafkaBus`: Apache Kafka through confluent-kafka (librdkafka), imported lazily: the
  `kafka` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stoker.adapters.bus.memory import MemoryBus, partition_for
from stoker.adapters.bus.sqlite_log import SqliteLogBus

if TYPE_CHECKING:
    from stoker.adapters.bus.kafka import KafkaBus

__all__ = ["KafkaBus", "MemoryBus", "SqliteLogBus", "partition_for"]


def __getattr__(name: str) -> Any:
    # confluent-kafka is an optional extra: import it only when the Kafka adapter is asked for.
    if name == "KafkaBus":
        from stoker.adapters.bus.kafka import KafkaBus

        return KafkaBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
