"""Event bus adapters under contract test, one factory each.

A factory opens a fresh, isolated bus and yields it with helpers for unique topic and
group names. To put a new adapter under the contract suite, write one `@asynccontextmanager`
factory, and (if its members can live in other processes) an opener for `bus_from_spec`,
then add a `BusFactory` entry to `FACTORIES`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.bus import KafkaBus, MemoryBus, SqliteLogBus
from stoker.adapters.bus.dynamodb_streams import DynamoDbStreamsBus
from stoker.ports.bus import EventBus
from stoker.settings import Settings
from tests.contract.store_factories import drop_tables


@dataclass(frozen=True)
class FactoryEnv:
    """What a factory may use: a private folder and the real infrastructure's addresses.

    An address is filled in only for a factory that lists its fixture in `BusFactory.needs`
    (empty otherwise), so in-process adapters never wait for brokers to start.
    """

    tmp_path: Path
    kafka_bootstrap: str = ""
    dynamodb_endpoint: str = ""


@dataclass
class BusUnderTest:
    """A started bus plus what the contract tests need to know about it.

    worker_spec: JSON-able arguments for `bus_from_spec`, so a consumer in another process
        opens the same bus; None when the bus cannot be shared between processes.
    takeover_s: longest time a dead member may keep its partitions (lease TTL / session).
    """

    bus: EventBus
    name: str
    worker_spec: dict[str, Any] | None = None
    takeover_s: float = 0.0
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def topic(self, label: str = "t") -> str:
        return f"contract-{self.prefix}-{label}-{uuid.uuid4().hex[:8]}"

    def group(self, label: str = "g") -> str:
        return f"contract-{self.prefix}-{label}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class BusFactory:
    open: Callable[[FactoryEnv], AbstractAsyncContextManager[BusUnderTest]]
    marks: tuple[pytest.MarkDecorator, ...] = ()
    multi_member: bool = True
    """Several members of one group split the partitions."""
    cross_process: bool = False
    """Members may run in other processes (the kill -9 test needs it)."""
    needs: tuple[str, ...] = ()
    """Fixtures (from tests/conftest.py) whose values go into the factory's FactoryEnv."""


# Short liveness timeouts, so the crash test sees a dead member replaced in seconds.
SQLITE_LEASE_TTL_S = 1.0
KAFKA_SESSION_TIMEOUT_MS = 6_000  # the broker's default minimum
KAFKA_HEARTBEAT_MS = 2_000
DYNAMODB_LEASE_TTL_S = 2.0


def bus_from_spec(spec: dict[str, Any]) -> EventBus:
    """Open the bus a `worker_spec` describes (used by tests/contract/bus_worker.py)."""
    kind = spec["kind"]
    if kind == "sqlite":
        return SqliteLogBus(spec["path"], lease_ttl_s=float(spec["lease_ttl_s"]))
    if kind == "kafka":
        return KafkaBus(
            spec["bootstrap"],
            partitions=8,
            replication=1,
            session_timeout_ms=int(spec["session_timeout_ms"]),
            heartbeat_interval_ms=int(spec["heartbeat_interval_ms"]),
        )
    if kind == "dynamodb_streams":
        settings = Settings(
            dynamodb_endpoint=spec["endpoint"], dynamodb_table_prefix=spec["prefix"]
        )
        return DynamoDbStreamsBus(
            settings, lease_ttl_s=float(spec["lease_ttl_s"]), poll_interval_s=0.05
        )
    raise ValueError(f"no opener for bus kind {kind!r}")


@asynccontextmanager
async def memory_bus(env: FactoryEnv) -> AsyncIterator[BusUnderTest]:
    bus = MemoryBus(partitions=8)
    await bus.start()
    try:
        yield BusUnderTest(bus, "memory")
    finally:
        await bus.close()


@asynccontextmanager
async def sqlite_bus(env: FactoryEnv) -> AsyncIterator[BusUnderTest]:
    spec = {
        "kind": "sqlite",
        "path": str(env.tmp_path / "bus.sqlite3"),
        "lease_ttl_s": SQLITE_LEASE_TTL_S,
    }
    bus = bus_from_spec(spec)
    await bus.start()
    try:
        yield BusUnderTest(bus, "sqlite", spec, takeover_s=SQLITE_LEASE_TTL_S * 2)
    finally:
        await bus.close()


@asynccontextmanager
async def kafka_bus(env: FactoryEnv) -> AsyncIterator[BusUnderTest]:
    spec = {
        "kind": "kafka",
        "bootstrap": env.kafka_bootstrap,
        "session_timeout_ms": KAFKA_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": KAFKA_HEARTBEAT_MS,
    }
    bus = bus_from_spec(spec)
    await bus.start()
    try:
        yield BusUnderTest(bus, "kafka", spec, takeover_s=KAFKA_SESSION_TIMEOUT_MS / 1000 * 2)
    finally:
        await bus.close()


@asynccontextmanager
async def dynamodb_streams_bus(env: FactoryEnv) -> AsyncIterator[BusUnderTest]:
    spec = {
        "kind": "dynamodb_streams",
        "endpoint": env.dynamodb_endpoint,
        "prefix": f"contract-{uuid.uuid4().hex[:12]}",
        "lease_ttl_s": DYNAMODB_LEASE_TTL_S,
    }
    bus = bus_from_spec(spec)
    await bus.start()
    try:
        yield BusUnderTest(bus, "dynamodb_streams", spec, takeover_s=DYNAMODB_LEASE_TTL_S * 2)
    finally:
        await bus.close()
        prefix = spec["prefix"]
        await drop_tables(env.dynamodb_endpoint, [f"{prefix}-jobs", f"{prefix}-bus-checkpoints"])


FACTORIES: dict[str, BusFactory] = {
    "memory": BusFactory(memory_bus),
    "sqlite": BusFactory(sqlite_bus, cross_process=True),
    "kafka": BusFactory(
        kafka_bus,
        marks=(pytest.mark.integration,),
        cross_process=True,
        needs=("kafka_bootstrap",),
    ),
    # One active member per group (a lease), so members do not split shards.
    "dynamodb_streams": BusFactory(
        dynamodb_streams_bus,
        marks=(pytest.mark.integration,),
        multi_member=False,
        cross_process=True,
        needs=("dynamodb_endpoint",),
    ),
}
