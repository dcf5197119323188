"""The Kafka event bus, on confluent-kafka (librdkafka): the `kafka` extra.

librdkafka does the protocol work (batching, compression, request encoding, fetch parsing,
heartbeats) in C threads outside the GIL, so the event loop spends little on it.

- `config`: `KafkaConfig`, what the bus is told (built by the composition root), and its
  `KafkaSecurity` (SASL/SCRAM and TLS);
- `errors`: librdkafka's errors translated once into stoker's, `retriable` on each;
- `broker`: calls to a broker that may not answer yet, retried with the config's policy;
- `producer`: publishing (`KafkaPublisher`);
- `member`: one member of a consumer group (`KafkaMember`, the `RecordSource`);
- `bus`: `KafkaBus`, the `EventBus` that ties them together.
"""

from stoker.adapters.bus.kafka.bus import KafkaBus
from stoker.adapters.bus.kafka.config import LIBRDKAFKA_LOGGER, KafkaConfig, KafkaSecurity
from stoker.adapters.bus.kafka.errors import KafkaFailure, KafkaLoginRefused, KafkaUnavailable

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "KafkaBus",
    "KafkaConfig",
    "KafkaFailure",
    "KafkaLoginRefused",
    "KafkaSecurity",
    "KafkaUnavailable",
]
