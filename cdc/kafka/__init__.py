"""The Kafka boundary: everything that touches a Kafka client library lives in this package.

- :mod:`cdc.kafka.types`: the partitions and records cdc reads, in its own types;
- :mod:`cdc.kafka.protocols`: what cdc asks of a publisher, a consumer and an admin, with the
  delivery guarantee of each;
- :mod:`cdc.kafka.kafka_python`, :mod:`cdc.kafka.confluent`: those three on each client;
- :mod:`cdc.kafka.clients`: the client a configuration names, made by name;
- :mod:`cdc.kafka.errors`: the clients' errors translated into cdc's, in one place;
- :mod:`cdc.kafka.options`: the configuration in each client's names;
- :mod:`cdc.kafka.limits`: topics created and measured once, and the oversize check;
- :mod:`cdc.kafka.check`: ``cdc check``'s look at the brokers.
"""

from __future__ import annotations

__all__ = [
    "AUTHENTICATION_FIX",
    "AUTHORIZATION_FIX",
    "BUFFER_BYTES",
    "SINK_FETCH_BYTES",
    "SINK_SESSION_TIMEOUT_MS",
    "Admin",
    "AnyPublisher",
    "ConfluentAdmin",
    "ConfluentConsumer",
    "ConfluentPublisher",
    "ConsumedRecord",
    "Consumer",
    "KafkaPythonAdmin",
    "KafkaPythonConsumer",
    "KafkaPythonPublisher",
    "LeaderUnknown",
    "PartitionRevoked",
    "Publisher",
    "RebalanceListener",
    "TopicPartition",
    "check_kafka",
    "client_options",
    "kafka_failure",
    "kafka_fix",
    "librdkafka_options",
    "open_admin",
    "open_consumer",
    "open_publisher",
]

from cdc.kafka.check import check_kafka
from cdc.kafka.clients import open_admin, open_consumer, open_publisher
from cdc.kafka.confluent import ConfluentAdmin, ConfluentConsumer, ConfluentPublisher
from cdc.kafka.errors import (
    AUTHENTICATION_FIX,
    AUTHORIZATION_FIX,
    LeaderUnknown,
    PartitionRevoked,
    kafka_failure,
    kafka_fix,
)
from cdc.kafka.kafka_python import KafkaPythonAdmin, KafkaPythonConsumer, KafkaPythonPublisher
from cdc.kafka.options import (
    BUFFER_BYTES,
    SINK_FETCH_BYTES,
    SINK_SESSION_TIMEOUT_MS,
    client_options,
    librdkafka_options,
)
from cdc.kafka.protocols import Admin, Consumer, Publisher, RebalanceListener
from cdc.kafka.types import ConsumedRecord, TopicPartition

AnyPublisher = Publisher
"""The name the connectors know the publisher by."""
