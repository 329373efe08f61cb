"""What cdc asks of a Kafka client: a publisher, a consumer, an admin. Each client module
(:mod:`cdc.kafka.kafka_python`, :mod:`cdc.kafka.confluent`) implements all three; nothing else in
cdc sees a client library. Errors raised through these are cdc's (:mod:`cdc.kafka.errors`)."""

from __future__ import annotations

__all__ = ["Admin", "Consumer", "Publisher", "RebalanceListener"]

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cdc.events import Record
from cdc.kafka.types import ConsumedRecord, TopicPartition


class Publisher(Protocol):
    """Sends records without waiting and reports each record's fate by callback.

    Delivery guarantee: idempotent with ``acks=all``. ``on_ack`` runs only once every in-sync
    replica has the record; retries neither duplicate nor reorder records of one partition, and
    records of one key go to one partition, so one key's records are acked in the order sent.
    ``on_error`` runs instead when the broker will not take a record; later records of the
    session may still be acked, so the caller must not acknowledge a source position past it.
    A record that :class:`~cdc.oversized.Oversized` leaves out is acked at once.
    """

    @property
    def unacked_bytes(self) -> int:
        """Value bytes sent and not yet acked (an upper bound), for a bound on memory; 0 when the
        client bounds its queue in bytes itself."""
        ...

    def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` when missing (``partitions``, by default ``[kafka.topics]``'s, and
        its replication) and learn its size limit; :meth:`send_with` does it at a topic's
        first record."""
        ...

    def callback(
        self, on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> Any:
        """What :meth:`send_with` calls back with, made once for many records: making one per
        record costs."""
        ...

    def send_with(self, record: Record, callback: Any) -> None:
        """Queue ``record``; later ``on_ack(*args)`` or ``on_error(e)``, as :meth:`callback` was
        given them (on the client's I/O thread or in :meth:`poll`: they must only hand over)."""
        ...

    def poll(self, timeout_s: float = 0.0) -> None:
        """Run the callbacks of the acks that arrived, waiting up to ``timeout_s``."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` until every record sent is acked or failed, its callback
        run. When the time runs out first, what is left stays in flight (kafka-python then
        raises :class:`~cdc.errors.KafkaUnavailable`): the callbacks, not this, say what was
        delivered."""
        ...

    def close(self, timeout_s: float = 5.0) -> None:
        """Give the records in flight ``timeout_s``, then let go of the client: what is still
        undelivered is dropped (it was never acked, so the source sends it again)."""
        ...


class RebalanceListener(Protocol):
    """Told when the group hands partitions over (on whichever thread the client chooses)."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...


class Consumer(Protocol):
    """Reads records of the partitions the consumer group assigns it, never committing offsets.

    Resume rule: positions live in the sink's target, not in Kafka. After each assignment the
    owner seeks every assigned partition to the offset after the last record it stored (or to
    :meth:`beginning_offsets`); :meth:`poll` then returns records from there on, in offset order
    within a partition.
    """

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        """Join the group for ``topics`` (replacing any earlier subscription)."""
        ...

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read ``partitions`` without a group (then :meth:`seek` them)."""
        ...

    def assignment(self) -> set[TopicPartition]:
        """The partitions assigned now."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on; :class:`~cdc.kafka.errors.PartitionRevoked` when the
        partition was taken away meanwhile."""
        ...

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """For each partition, an offset that :meth:`seek` takes as "its first record"."""
        ...

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumedRecord]]:
        """The records that came, at most ``max_records``, waiting up to ``timeout_ms`` for one."""
        ...

    def close(self) -> None:
        """Leave the group (its partitions go to the others at once) and let go of the client."""
        ...


class Admin(Protocol):
    """Topics and their partitions, offsets and size limits."""

    def create_topic(self, topic: str, partitions: int, replication_factor: int) -> None:
        """Create ``topic``; one that exists already is left as it is."""
        ...

    def topics(self) -> set[str]:
        """Every topic of the cluster."""
        ...

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The topic's partitions, as of the last :meth:`topics` when it listed the topic; None
        when there is no such topic."""
        ...

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's first offset; :class:`~cdc.kafka.errors.LeaderUnknown` for a
        partition with no known leader yet (a topic created moments ago)."""
        ...

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's next offset to be written (as :meth:`beginning_offsets`)."""
        ...

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        """Each partition's first offset whose record's timestamp is ``timestamp_ms`` or later;
        None when no record is that recent (as :meth:`beginning_offsets`)."""
        ...

    def topic_limits(self, topic: str) -> tuple[str | None, str | None]:
        """The topic's ``max.message.bytes`` and the broker's ``socket.request.max.bytes`` as
        Kafka states them; None for what cannot be read."""
        ...

    def close(self) -> None: ...
