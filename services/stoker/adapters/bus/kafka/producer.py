"""Publishing to Kafka: one idempotent producer per bus.

`enable.idempotence` with `acks=all`, the event subject as key and Java's murmur2
partitioner, so a job's records land in the same partition whichever client produced them,
and stay in order. `send` hands every record of a call to librdkafka before waiting for
any acknowledgement, so records travel in per-partition batches. A thread of the producer
serves librdkafka's delivery reports; a call learns its outcome once, when its last record
is acknowledged or one failed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stoker.adapters.bus.kafka.broker import wait_reachable
from stoker.adapters.bus.kafka.config import KafkaConfig
from stoker.adapters.bus.kafka.errors import LoginWatch, translate
from stoker.core.errors import InfrastructureUnavailable

_DELIVERY_POLL_S = 0.05
"""How long the delivery thread waits for reports before checking whether it should stop."""
_QUEUE_FULL_WAIT_S = 0.005
"""How long a send waits for room when librdkafka's local queue is full."""


class KafkaPublisher:
    """The bus's producer: started once, shared by every publish call."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: Producer | None = None
        self._deliveries: _DeliveryThread | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect, trying an unreachable broker again until `connect_timeout_s`."""
        async with self._start_lock:
            if self._producer is not None:
                return
            watch = LoginWatch()
            producer = Producer(
                self._config.librdkafka(
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": self._config.linger_ms,
                        "delivery.timeout.ms": self._config.delivery_timeout_ms,
                        "partitioner": "murmur2_random",
                        "error_cb": watch,
                    }
                )
            )

            def metadata(timeout_s: float) -> None:
                try:
                    producer.list_topics(timeout=timeout_s)
                except KafkaException:
                    # Serves the error callback: a refused login is only reported there.
                    producer.poll(0)
                    watch.check("producer connect")
                    raise

            def probe(timeout_s: float) -> Awaitable[object]:
                return asyncio.to_thread(metadata, timeout_s)

            await wait_reachable("producer", probe, self._config)
            self._producer = producer
            self._deliveries = _DeliveryThread(producer)

    async def close(self) -> None:
        """Wait up to `close_flush_s` for records on their way; InfrastructureUnavailable
        if some were not acknowledged by then."""
        producer, self._producer = self._producer, None
        deliveries, self._deliveries = self._deliveries, None
        if producer is None or deliveries is None:
            return
        left = await asyncio.to_thread(deliveries.stop_and_flush, self._config.close_flush_s)
        if left:
            raise InfrastructureUnavailable(
                f"kafka producer closed with {left} records not acknowledged by"
                f" {self._config.bootstrap}"
            )

    async def send(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        """Publish (key, value) pairs in order; returns once every one is acknowledged."""
        if not items:
            return
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        batch = _Batch(asyncio.get_running_loop(), len(items))
        for key, value in items:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=batch.delivered)
                    break
                except BufferError:
                    # Back-pressure, not a failure: the delivery thread drains the queue.
                    await asyncio.sleep(_QUEUE_FULL_WAIT_S)
                except KafkaException as exc:
                    batch.abandon(exc)
                    break
            if batch.abandoned:
                break
        error = await batch.future
        if error is not None:
            raise translate(error, f"publish to {topic}") from None


class _Batch:
    """The records of one send: done when the last is acknowledged or one failed.

    Delivery reports arrive on the delivery thread; the outcome reaches the event loop once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        self._loop = loop
        self.future: asyncio.Future[KafkaError | KafkaException | None] = loop.create_future()
        self.abandoned = False
        self._waiting = records
        self._error: KafkaError | KafkaException | None = None
        self._lock = threading.Lock()

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        self._settle(1, error)

    def abandon(self, error: KafkaException) -> None:
        """`produce` refused a record: the call fails now. That record and the ones after it
        were never handed over; whatever the earlier ones do, the outcome is this error."""
        self.abandoned = True
        with self._lock:
            unsent = self._waiting
        self._settle(unsent, error)

    def _settle(self, records: int, error: KafkaError | KafkaException | None) -> None:
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
            self._waiting -= records
            done = self._waiting <= 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self._error)


class _DeliveryThread:
    """Serves the producer's delivery reports on a thread of its own."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="stoker-kafka-deliveries", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(_DELIVERY_POLL_S)

    def stop_and_flush(self, timeout_s: float) -> int:
        """Stop serving, then wait for what is in flight; returns how many records are left."""
        self._stop.set()
        self._thread.join()
        left: int = self._producer.flush(timeout_s)
        return left
