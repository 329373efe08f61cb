"""The three clients on confluent-kafka (librdkafka, in C): publisher, consumer, admin, for speed.

librdkafka delivers acks and rebalances only from ``poll()``, which the caller's loop calls, so
callbacks run on the caller's thread: a thread of ours polling instead would take the GIL from
the reader at every ack.
"""

from __future__ import annotations

__all__ = ["ConfluentAdmin", "ConfluentConsumer", "ConfluentPublisher"]

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from cdc.config import KafkaConfig
from cdc.errors import KafkaUnavailable
from cdc.events import Record
from cdc.kafka.errors import kafka_failure, reason, translated
from cdc.kafka.limits import SizedPublisher
from cdc.kafka.options import (
    BUFFER_BYTES,
    CONFLUENT_QUEUE,
    SINK_FETCH_BYTES,
    SINK_SESSION_TIMEOUT_MS,
    confluent_kafka_module,
    librdkafka_options,
)
from cdc.kafka.protocols import RebalanceListener
from cdc.kafka.types import ConsumedRecord, TopicPartition
from cdc.oversized import Oversized

log = logging.getLogger(__name__)

_record = tuple.__new__
"""Builds a :class:`ConsumedRecord` without the NamedTuple's ``__new__``, a Python function:
per record, that call cost more than the record's fifth field, its timestamp."""


class ConfluentAdmin:
    """:class:`~cdc.kafka.protocols.Admin` on librdkafka.

    Listing topics means reading the metadata of every topic in the cluster. kafka-python parses
    it in Python on its I/O thread, holding the GIL from the sink's threads, whose rows then
    arrive late on a broker with many topics. librdkafka parses it in C, far faster.
    """

    def __init__(self, config: KafkaConfig, setting: str = "[kafka.consumer] client") -> None:
        self._ck = confluent_kafka_module(setting)
        self._admin = self._ck.admin.AdminClient(
            {**librdkafka_options(config), "allow.auto.create.topics": False}
        )
        self._topics: dict[str, Any] = {}
        self._socket_max: str | None = None

    def create_topic(self, topic: str, partitions: int, replication_factor: int) -> None:
        new = self._ck.admin.NewTopic(
            topic, num_partitions=partitions, replication_factor=replication_factor
        )
        future = self._admin.create_topics([new], operation_timeout=10)[topic]
        try:
            future.result(timeout=30)
            log.info("created topic %s", topic)
        except self._ck.KafkaException as e:
            if e.args[0].code() != self._ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise kafka_failure(f"cannot create topic {topic}: {reason(e)}", e) from e

    def _metadata(self, topic: str | None = None) -> dict[str, Any]:
        with translated("Kafka did not list its topics"):
            return self._admin.list_topics(topic, timeout=10).topics  # type: ignore[no-any-return]

    def topics(self) -> set[str]:
        self._topics = self._metadata()
        return set(self._topics)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        found = self._topics.get(topic)
        if found is None:
            found = self._metadata(topic).get(topic)
            if found is None or found.error is not None:
                return None  # no such topic (or no leader yet)
        return set(found.partitions)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(partitions, self._ck.admin.OffsetSpec.earliest())

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(partitions, self._ck.admin.OffsetSpec.latest())

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        spec = self._ck.admin.OffsetSpec.for_timestamp(timestamp_ms)
        # librdkafka answers -1 when no record is that recent.
        return {tp: o if o >= 0 else None for tp, o in self._offsets(partitions, spec).items()}

    def _offsets(
        self, partitions: Iterable[TopicPartition], spec: Any
    ) -> dict[TopicPartition, int]:
        asked = {self._ck.TopicPartition(tp.topic, tp.partition): tp for tp in partitions}
        if not asked:
            return {}
        futures = self._admin.list_offsets(dict.fromkeys(asked, spec), request_timeout=10)
        found = {}
        for ck_tp, future in futures.items():
            tp = asked[self._ck.TopicPartition(ck_tp.topic, ck_tp.partition)]
            try:
                found[tp] = future.result().offset
            except self._ck.KafkaException as e:
                raise KafkaUnavailable(
                    f"no offsets for {tp.topic}[{tp.partition}]: {reason(e)}"
                ) from e
        return found

    def topic_limits(self, topic: str) -> tuple[str | None, str | None]:
        admin = self._ck.admin
        topic_max = None
        try:
            found = self._admin.describe_configs(
                [admin.ConfigResource(admin.ResourceType.TOPIC, topic)]
            )
            for future in found.values():
                topic_max = future.result(timeout=30)["max.message.bytes"].value
            if self._socket_max is None:
                brokers = self._admin.list_topics(timeout=10).brokers
                broker = str(min(brokers))
                found = self._admin.describe_configs(
                    [admin.ConfigResource(admin.ResourceType.BROKER, broker)]
                )
                for future in found.values():
                    self._socket_max = future.result(timeout=30)["socket.request.max.bytes"].value
        except (self._ck.KafkaException, KeyError, ValueError) as e:
            log.debug("describing %s: %s", topic, e)
        return topic_max, self._socket_max

    def close(self) -> None:
        pass  # the admin client has no close; it goes with its last reference


class ConfluentPublisher(SizedPublisher):
    """:class:`~cdc.kafka.protocols.Publisher` on librdkafka: ``on_ack`` and ``on_error`` run in
    :meth:`poll`, on the caller's thread."""

    def __init__(self, config: KafkaConfig, oversized: Oversized | None = None) -> None:
        admin = ConfluentAdmin(config, "[kafka.producer] client")
        self._ck = admin._ck
        p = config.producer
        self._producer = self._ck.Producer(
            {
                **librdkafka_options(config),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": p.linger_ms,
                "batch.size": min(p.batch_size, 2_147_483_647),
                "compression.type": p.compression_type,
                "message.max.bytes": p.max_request_size,
                "request.timeout.ms": p.request_timeout_ms,
                # Each record waiting in librdkafka costs resident memory: keep the queue
                # short, whatever max_unacked_records allows.
                "queue.buffering.max.messages": min(p.max_unacked_records, CONFLUENT_QUEUE),
                "queue.buffering.max.kbytes": BUFFER_BYTES // 1024,
            }
        )
        super().__init__(config, admin, oversized)
        self._known: set[str] = set()
        self.on_wait: Callable[[], None] | None = None
        """Called about twice a second while :meth:`send_with` waits for room in librdkafka's
        full queue (Kafka away): the caller's loop is not turning, so it says so here."""

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    unacked_bytes = 0
    """librdkafka bounds its queue in bytes itself (``queue.buffering.max.kbytes``): a full queue
    makes :meth:`send_with` wait for acks."""

    def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        if topic in self._known:
            return
        super().ensure_topic(topic, partitions)
        self._known.add(topic)

    @staticmethod
    def callback(
        on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                on_ack(*args)
            else:
                on_error(kafka_failure(f"{msg.topic()}: {err.str()}", err))

        return delivered

    def send_with(self, record: Record, callback: Callable[[Any, Any], None]) -> None:
        if record.topic not in self._known:
            self.ensure_topic(record.topic)
        value = record.value
        if value is not None and len(value) > self._gate and self._oversized is not None:
            checked = self._fitted(record)
            if checked is None:
                callback(None, None)  # left out: nothing waits for it
                return
            record = checked
        waited = time.monotonic() + 0.5
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,  # librdkafka copies them
                    on_delivery=callback,
                )
                return
            except BufferError:
                self._producer.poll(0.005)  # the local queue is full: take acks, freeing it
                if self.on_wait is not None and time.monotonic() >= waited:
                    self.on_wait()
                    waited = time.monotonic() + 0.5
            except self._ck.KafkaException as e:
                raise kafka_failure(f"cannot send to {record.topic}: {e}", e) from e

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)


class ConfluentConsumer:
    """:class:`~cdc.kafka.protocols.Consumer` on librdkafka.

    kafka-python's owner seeks after the assignment, but librdkafka only honours positions given
    when a partition is assigned. So the rebalance callbacks, which librdkafka runs inside
    :meth:`poll` on the caller's thread, hand the new partitions to ``position`` (the owner's
    seek, whose :meth:`seek` calls are collected here) and assign them at the offsets it chose.
    """

    def __init__(
        self,
        config: KafkaConfig,
        group_id: str | None,
        position: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        self._ck = confluent_kafka_module("[kafka.consumer] client")
        self._position = position
        self._consumer = self._ck.Consumer(
            {
                **librdkafka_options(config),
                # Without a group it only reads what it is assigned: the id is never used.
                "group.id": group_id or "cdc-unused",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SINK_SESSION_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": 5_000,
                "queued.max.messages.kbytes": 32_768,
                "fetch.max.bytes": SINK_FETCH_BYTES,
            }
        )
        self._listener: RebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()
        self._seeks: dict[TopicPartition, int] = {}
        self._assigning = False
        self._sought: dict[TopicPartition, int] = {}
        """The offset each partition was last sought to outside a rebalance."""
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        with translated("Kafka"):
            self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [self._tp(p.topic, p.partition) for p in partitions]
        if self._listener is not None:
            self._listener.on_partitions_assigned(set(tps))
        self._seeks = {}
        self._assigning = True
        try:
            if self._position is not None:
                self._position(tps)  # calls seek() for every partition
        finally:
            self._assigning = False
        self._assigned = set(tps)
        self._sought = dict(self._seeks)
        consumer.assign(
            [
                self._ck.TopicPartition(tp.topic, tp.partition, self._seeks.get(tp, -1001))
                for tp in tps
            ]
        )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {self._tp(p.topic, p.partition) for p in partitions}
        self._assigned -= tps
        if self._listener is not None:
            self._listener.on_partitions_revoked(tps)
        consumer.unassign()

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned = set(partitions)
        self._sought.clear()
        with translated("Kafka"):
            self._consumer.assign([self._ck.TopicPartition(*tp) for tp in partitions])

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self._assigning:
            self._seeks[tp] = offset  # assigned at this offset when the callback returns
            return
        wanted = self._ck.TopicPartition(tp.topic, tp.partition, offset)
        self._sought[tp] = offset
        try:
            self._consumer.seek(wanted)
        except self._ck.KafkaException as e:
            if e.args[0].code() != self._ck.KafkaError._STATE:
                raise kafka_failure(f"Kafka did not seek {tp.topic}[{tp.partition}]: {e}", e) from e
            # Assigned moments ago, not fetching yet: librdkafka takes a position only with
            # the assignment. The others keep theirs: where they read, else where sought.
            others = [self._ck.TopicPartition(*t) for t in self._assigned if t != tp]
            with translated("Kafka"):
                positions = self._consumer.position(others)
                for p in positions:
                    if p.offset < 0:
                        p.offset = self._sought.get(self._tp(p.topic, p.partition), p.offset)
                self._consumer.assign([*positions, wanted])

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """librdkafka's "the beginning" marker: resolved by the broker when fetching starts."""
        return {tp: self._ck.OFFSET_BEGINNING for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumedRecord]]:
        try:
            # consume() waits for max_records or the timeout, whichever comes last at a low
            # rate: take what is queued, else wait for one record, then take what came with it.
            messages: list[Any] = self._consumer.consume(max_records, 0)
            if not messages:
                first = self._consumer.poll(timeout_ms / 1000)
                if first is None:
                    return {}
                messages = [first, *self._consumer.consume(max_records - 1, 0)]
        except self._ck.KafkaException as e:
            raise kafka_failure(f"Kafka: {reason(e)}", e) from e
        batch: dict[TopicPartition, list[ConsumedRecord]] = {}
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise kafka_failure(f"Kafka: {err.str()}", err)
                log.debug("consumer: %s", err.str())
                continue
            tp = self._tp(m.topic(), m.partition())
            records = batch.get(tp)
            if records is None:
                records = batch[tp] = []
            records.append(
                _record(
                    ConsumedRecord,
                    (m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]),
                )
            )
        return batch

    def close(self) -> None:
        self._consumer.close()
