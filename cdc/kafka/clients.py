"""The clients a ``[kafka]`` configuration names, made by name: ``kafka-python`` (the default)
or ``confluent-kafka``."""

from __future__ import annotations

__all__ = ["open_admin", "open_consumer", "open_publisher"]

from collections.abc import Callable
from typing import Literal

from cdc.config import KafkaConfig
from cdc.kafka.confluent import ConfluentAdmin, ConfluentConsumer, ConfluentPublisher
from cdc.kafka.kafka_python import KafkaPythonAdmin, KafkaPythonConsumer, KafkaPythonPublisher
from cdc.kafka.protocols import Admin, Consumer, Publisher
from cdc.kafka.types import TopicPartition
from cdc.oversized import Oversized

Client = Literal["kafka-python", "confluent-kafka"]


def open_publisher(
    config: KafkaConfig, oversized: Oversized | None = None, client: Client | None = None
) -> Publisher:
    """The publisher ``client`` names (by default ``[kafka.producer] client``)."""
    if (client or config.producer.client) == "confluent-kafka":
        return ConfluentPublisher(config, oversized)
    return KafkaPythonPublisher(config, oversized)


def open_consumer(
    config: KafkaConfig,
    group_id: str | None,
    position: Callable[[list[TopicPartition]], None] | None = None,
    max_records: int = 500,
    client: Client | None = None,
) -> Consumer:
    """The consumer ``client`` names (by default ``[kafka.consumer] client``), in ``group_id``
    (None: it reads only what it is assigned). ``position`` seeks newly assigned partitions:
    the confluent-kafka consumer calls it inside its rebalance callback, where librdkafka
    takes positions; kafka-python's owner seeks after :meth:`~Consumer.poll` instead."""
    if (client or config.consumer.client) == "confluent-kafka":
        return ConfluentConsumer(config, group_id, position)
    return KafkaPythonConsumer(config, group_id, max_records)


def open_admin(
    config: KafkaConfig, client: Client | None = None, request_timeout_ms: int | None = None
) -> Admin:
    """The admin ``client`` names (by default ``[kafka.consumer] client``)."""
    if (client or config.consumer.client) == "confluent-kafka":
        return ConfluentAdmin(config)
    return KafkaPythonAdmin(config, request_timeout_ms)
