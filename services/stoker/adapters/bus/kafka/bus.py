"""The Kafka `EventBus`: a producer for publishing, a group member per `source`, and the
admin calls that create topics."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stoker.adapters.bus.kafka.broker import retry_transient, wait_reachable
from stoker.adapters.bus.kafka.config import KafkaConfig
from stoker.adapters.bus.kafka.errors import TOPIC_ALREADY_EXISTS, LoginWatch, translate
from stoker.adapters.bus.kafka.member import KafkaMember, NewConsumer
from stoker.adapters.bus.kafka.producer import KafkaPublisher
from stoker.core.events import CloudEvent

log = structlog.get_logger("stoker.adapters.bus.kafka")


class KafkaBus:
    """The Kafka `EventBus`.

    config: a `KafkaConfig`, or a bootstrap address for one with the defaults; `changes`
        sets fields of it (`KafkaBus("127.0.0.1:9092", partitions=3)`).
    new_consumer: makes each member's librdkafka consumer (default `confluent_kafka.Consumer`;
        a test double for tests of the member alone).
    """

    def __init__(
        self,
        config: KafkaConfig | str,
        /,
        *,
        new_consumer: NewConsumer = Consumer,
        **changes: Any,
    ) -> None:
        if isinstance(config, str):
            config = KafkaConfig(bootstrap=config)
        self.config = dataclasses.replace(config, **changes) if changes else config
        self._new_consumer = new_consumer
        self._publisher = KafkaPublisher(self.config)
        self._members: set[KafkaMember] = set()

    async def start(self) -> None:
        """Connect the producer, trying an unreachable broker again until the config's
        `connect_timeout_s`."""
        await self._publisher.start()

    async def close(self) -> None:
        for member in list(self._members):
            await member.close()
        await self._publisher.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        config = self.config
        watch = LoginWatch()
        admin = AdminClient(config.librdkafka(error_cb=watch))

        def metadata(timeout_s: float) -> None:
            try:
                admin.list_topics(timeout=timeout_s)
            except KafkaException:
                admin.poll(0)  # serves the error callback, where a refused login shows
                watch.check("admin connect")
                raise

        def probe(timeout_s: float) -> Awaitable[object]:
            return asyncio.to_thread(metadata, timeout_s)

        await wait_reachable("admin", probe, config)
        wanted = list(dict.fromkeys(topics))

        def create() -> list[str]:
            existing = set(admin.list_topics(timeout=config.connect_timeout_s).topics)
            missing = [t for t in wanted if t not in existing]
            if not missing:
                return []
            futures = admin.create_topics(
                [NewTopic(t, config.partitions, config.replication) for t in missing],
                operation_timeout=config.connect_timeout_s,
            )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    failure = translate(exc, f"create topic {name}")
                    # Another process may have created it a moment ago: that is success too.
                    if failure.code != TOPIC_ALREADY_EXISTS:
                        raise failure from exc
            return missing

        # Listing first makes a repeated call create only what is still missing.
        created = await retry_transient(create, "ensure_topics", config)
        if created:
            log.info("topics created", topics=created, partitions=config.partitions)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: Sequence[CloudEvent]) -> None:
        await self._publisher.send(topic, [(e.subject.encode(), e.to_json()) for e in events])

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        await self._publisher.send(topic, [(key.encode(), value)])

    def source(self, group: str, topics: Sequence[str], *, background: bool = False) -> KafkaMember:
        config = self.config
        member = KafkaMember(
            config,
            group,
            list(topics),
            fetch_max_wait_ms=(
                config.background_fetch_max_wait_ms if background else config.fetch_max_wait_ms
            ),
            new_consumer=self._new_consumer,
            on_close=self._members.discard,
        )
        self._members.add(member)
        return member
