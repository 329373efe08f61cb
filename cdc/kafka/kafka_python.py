"""The three clients on kafka-python: publisher, consumer, admin (pure Python, the default)."""

from __future__ import annotations

__all__ = ["KafkaPythonAdmin", "KafkaPythonConsumer", "KafkaPythonPublisher", "list_offsets"]

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import kafka
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cdc.config import KafkaConfig
from cdc.events import Record
from cdc.kafka.errors import (
    LeaderUnknown,
    PartitionRevoked,
    kafka_failure,
    reason,
    translated,
)
from cdc.kafka.limits import SizedPublisher
from cdc.kafka.options import SINK_FETCH_BYTES, SINK_SESSION_TIMEOUT_MS, client_options
from cdc.kafka.protocols import RebalanceListener
from cdc.kafka.types import ConsumedRecord, TopicPartition
from cdc.oversized import Oversized

log = logging.getLogger(__name__)

_record = tuple.__new__


def list_offsets(
    client: Any, partitions: Iterable[TopicPartition], *, end: bool = False
) -> dict[TopicPartition, int]:
    """The first (or, with ``end``, the next to be written) offset of each partition, asked of
    a kafka-python ``KafkaConsumer``.

    kafka-python (3.0.12) leaves a partition whose leader its metadata does not know yet (a
    topic created moments ago) out of its ListOffsets request, then fails with a bare KeyError;
    that is raised here as :class:`LeaderUnknown` naming the partition.
    """
    partitions = list(partitions)
    if not partitions:
        return {}
    try:
        with translated("Kafka did not list offsets"):
            found = client.end_offsets(partitions) if end else client.beginning_offsets(partitions)
    except KeyError as e:
        tp = e.args[0] if e.args else None
        if not isinstance(tp, tuple) or len(tp) != 2:
            raise
        raise LeaderUnknown(f"Kafka names no leader yet for {tp[0]}[{tp[1]}]") from e
    # kafka-python's keys are its own namedtuples, equal to ours: keyed by what was asked.
    return {tp: found[tp] for tp in partitions}


class KafkaPythonAdmin:
    """:class:`~cdc.kafka.protocols.Admin` on kafka-python: a metadata-only consumer for topics
    and offsets, an admin client for creating and describing, each made at first use."""

    def __init__(self, config: KafkaConfig, request_timeout_ms: int | None = None) -> None:
        self._options = client_options(config)
        if request_timeout_ms is not None:
            self._options["request_timeout_ms"] = request_timeout_ms
        self._servers = ",".join(config.bootstrap_servers)
        self._client: kafka.KafkaConsumer | None = None
        self._admin: kafka.KafkaAdminClient | None = None
        self._socket_max: str | None = None

    def _consumer(self) -> kafka.KafkaConsumer:
        if self._client is None:
            with translated(f"Kafka at {self._servers}"):
                self._client = kafka.KafkaConsumer(**self._options, enable_auto_commit=False)
        return self._client

    def admin(self) -> kafka.KafkaAdminClient:
        """kafka-python's admin client (made now when not yet)."""
        if self._admin is None:
            with translated(f"Kafka at {self._servers}"):
                self._admin = kafka.KafkaAdminClient(**self._options)
        return self._admin

    def create_topic(self, topic: str, partitions: int, replication_factor: int) -> None:
        admin = self.admin()
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            return
        except KafkaError as e:
            raise kafka_failure(f"cannot create topic {topic}: {reason(e)}", e) from e
        log.info("created topic %s", topic)

    def topics(self) -> set[str]:
        with translated("Kafka did not list its topics"):
            return set(self._consumer().topics())

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        with translated(f"Kafka did not list the partitions of {topic}"):
            found = self._consumer().partitions_for_topic(topic)
        return set(found) if found else None

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return list_offsets(self._consumer(), partitions)

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return list_offsets(self._consumer(), partitions, end=True)

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        asked = list(partitions)
        if not asked:
            return {}
        with translated("Kafka did not list offsets"):
            found = self._consumer().offsets_for_times(dict.fromkeys(asked, timestamp_ms))
        # Keyed by kafka-python's namedtuples, equal to ours: looked up by what was asked.
        return {tp: None if found.get(tp) is None else found[tp].offset for tp in asked}

    def topic_limits(self, topic: str) -> tuple[str | None, str | None]:
        admin = self.admin()
        topic_max = None
        try:
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])],
                config_filter="all",
            )
            topic_max = found["topic"][topic]["max.message.bytes"]["value"]
            if self._socket_max is None:
                broker = str(admin.describe_cluster()["brokers"][0]["broker_id"])
                wanted = ["socket.request.max.bytes"]
                found = admin.describe_configs(
                    [ConfigResource(ConfigResourceType.BROKER, broker, wanted)],
                    config_filter="all",
                )
                self._socket_max = found["broker"][broker]["socket.request.max.bytes"]["value"]
        except (KafkaError, KeyError, IndexError, TypeError) as e:
            log.debug("describing %s: %s", topic, e)
        return topic_max, self._socket_max

    def describe_cluster(self) -> dict[str, Any]:
        with translated(f"brokers at {self._servers} did not describe the cluster"):
            return dict(self.admin().describe_cluster())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._admin is not None:
            self._admin.close()


class KafkaPythonPublisher(SizedPublisher):
    """:class:`~cdc.kafka.protocols.Publisher` on kafka-python.

    ``on_ack`` and ``on_error`` run on kafka-python's I/O thread. kafka-python has no bound on
    its buffer in bytes: :attr:`unacked_bytes` lets the caller keep one.
    """

    def __init__(self, config: KafkaConfig, oversized: Oversized | None = None) -> None:
        p = config.producer
        admin = KafkaPythonAdmin(config)
        with translated(f"Kafka at {','.join(config.bootstrap_servers)}"):
            self._producer = kafka.KafkaProducer(
                **client_options(config),
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=p.linger_ms,
                batch_size=p.batch_size,
                compression_type=None if p.compression_type == "none" else p.compression_type,
                max_request_size=p.max_request_size,
                request_timeout_ms=p.request_timeout_ms,
                allow_auto_create_topics=False,
            )
            admin.admin()
        super().__init__(config, admin, oversized)
        self._kafka_admin = admin
        self._only_partition: dict[str, int | None] = {}
        self._sent_bytes = 0
        self._acked_bytes = 0
        """Written by kafka-python's I/O thread only (:meth:`_acked`), read here."""

    def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        if topic in self._only_partition:
            return
        super().ensure_topic(topic, partitions)
        # With one partition there is nothing to choose: skipping kafka-python's pure-Python
        # murmur2 saves CPU on every record. Re-read at every session start.
        with translated(f"Kafka did not list the partitions of {topic}"):
            found = self._producer.partitions_for(topic) or set()
        self._only_partition[topic] = 0 if found == {0} else None

    @staticmethod
    def callback(
        on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> tuple[Callable[..., None], Callable[[Exception], None], tuple[Any, ...]]:
        return on_ack, on_error, args

    def send_with(
        self,
        record: Record,
        callback: tuple[Callable[..., None], Callable[[Exception], None], tuple[Any, ...]],
    ) -> None:
        on_ack, on_error, args = callback
        partition = self._only_partition.get(record.topic, -1)
        if partition == -1:
            self.ensure_topic(record.topic)
            partition = self._only_partition[record.topic]
        value = record.value
        if value is not None and len(value) > self._gate and self._oversized is not None:
            checked = self._fitted(record)
            if checked is None:
                on_ack(*args)  # left out: nothing waits for it
                return
            record = checked
        try:
            future = self._producer.send(
                record.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                partition=partition,
            )
        except KafkaError as e:
            raise kafka_failure(f"cannot send to {record.topic}: {reason(e)}", e) from e
        self._sent_bytes += len(value or b"")
        future.add_callback(self._acked, on_ack, args)
        future.add_errback(_refused, record.topic, on_error)

    def _acked(self, fn: Callable[..., None], args: tuple[Any, ...], metadata: Any) -> None:
        self._acked_bytes += max(0, metadata.serialized_value_size)
        fn(*args)

    @property
    def unacked_bytes(self) -> int:
        return self._sent_bytes - self._acked_bytes

    @staticmethod
    def poll(timeout_s: float = 0.0) -> None:
        """Acks arrive on kafka-python's I/O thread: nothing to do here but wait, as asked."""
        if timeout_s:
            time.sleep(timeout_s)

    def flush(self, timeout_s: float) -> None:
        with translated("flush failed"):
            self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaError as e:
            # kafka-python's close() flushes first and, when records are left (one the broker
            # refuses, say), raises without stopping its I/O thread: stop it without waiting.
            log.warning("closing the Kafka producer with records undelivered: %s", reason(e))
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
        finally:
            self._kafka_admin.close()


def _refused(topic: str, on_error: Callable[[Exception], None], e: BaseException) -> None:
    on_error(kafka_failure(f"{topic}: {reason(e)}", e))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """A :class:`RebalanceListener` told in cdc's partitions (on kafka-python's thread)."""

    def __init__(self, consumer: KafkaPythonConsumer, listener: RebalanceListener) -> None:
        self._consumer = consumer
        self._listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._listener.on_partitions_revoked({self._consumer.tp(tp) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._listener.on_partitions_assigned({self._consumer.tp(tp) for tp in assigned})


class KafkaPythonConsumer:
    """:class:`~cdc.kafka.protocols.Consumer` on kafka-python. Rebalances happen on kafka-python's
    thread, at any moment: the owner seeks after :meth:`poll` (see the sink runtime)."""

    def __init__(self, config: KafkaConfig, group_id: str | None, max_records: int = 500) -> None:
        with translated(f"Kafka at {','.join(config.bootstrap_servers)}"):
            self._consumer = kafka.KafkaConsumer(
                **client_options(config),
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=5000,
                session_timeout_ms=SINK_SESSION_TIMEOUT_MS,
                max_poll_records=max_records,
                fetch_max_bytes=SINK_FETCH_BYTES,
            )
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    def tp(self, tp: Any) -> TopicPartition:
        """cdc's partition for kafka-python's (one object per partition, made once)."""
        found = self._tps.get(tp)
        if found is None:
            found = self._tps[tp] = TopicPartition(tp.topic, tp.partition)
        return found

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        with translated("Kafka"):
            self._consumer.subscribe(topics=topics, listener=_Listener(self, listener))

    def assign(self, partitions: list[TopicPartition]) -> None:
        with translated("Kafka"):
            self._consumer.assign([kafka.TopicPartition(*tp) for tp in partitions])

    def assignment(self) -> set[TopicPartition]:
        return {self.tp(tp) for tp in self._consumer.assignment()}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        theirs = kafka.TopicPartition(tp.topic, tp.partition)
        try:
            self._consumer.seek(theirs, offset)
        except (ValueError, KeyError) as e:
            # kafka-python changes the assignment on its own thread, at any moment: its seek
            # then fails with one of these.
            if theirs in self._consumer.assignment():
                raise
            raise PartitionRevoked(f"{tp.topic}[{tp.partition}] was revoked") from e

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return list_offsets(self._consumer, partitions)

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumedRecord]]:
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as e:
            raise kafka_failure(f"Kafka: {reason(e)}", e) from e
        # One tuple per record (kafka-python's own ConsumerRecord has a dozen fields), built
        # without the NamedTuple's __new__, a Python function.
        return {
            self.tp(tp): [
                _record(ConsumedRecord, (r.offset, r.key, r.value, r.headers, r.timestamp))
                for r in records
            ]
            for tp, records in polled.items()
        }

    def close(self) -> None:
        self._consumer.close(autocommit=False)
