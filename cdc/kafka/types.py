"""The records and partitions cdc reads from Kafka, in types cdc owns (no client library's)."""

from __future__ import annotations

__all__ = ["ConsumedRecord", "TopicPartition"]

from typing import NamedTuple


class TopicPartition(NamedTuple):
    """One partition of one topic. Equal to (and hashed as) kafka-python's namedtuple of the same
    fields, so either finds the other in a dict."""

    topic: str
    """The topic's name."""
    partition: int
    """The partition's number within the topic, from 0."""


class ConsumedRecord(NamedTuple):
    """One record as a consumer's :meth:`~cdc.kafka.protocols.Consumer.poll` returns it."""

    offset: int
    """Its position in its partition; the next one to read after it is ``offset + 1``."""
    key: bytes | None
    """The key, byte for byte as produced; None when it had none."""
    value: bytes | None
    """The value, byte for byte as produced; None for a tombstone."""
    headers: list[tuple[str, bytes]]
    """The headers in the order produced; empty when it had none."""
    timestamp: int
    """Milliseconds since the epoch: the producer's create time, or the broker's append time
    when the topic says so."""
