"""What both publishers share: topics created and measured once, and the oversize check."""

from __future__ import annotations

__all__ = ["SizedPublisher", "record_limit"]

import logging

from cdc.config import KafkaConfig
from cdc.events import Record
from cdc.kafka.protocols import Admin
from cdc.oversized import Oversized

log = logging.getLogger(__name__)


def record_limit(
    max_request_size: int, topic_max: str | None, socket_max: str | None, topic: str
) -> int:
    """The largest record ``topic`` takes: the smallest of the three limits that apply."""
    limits = [max_request_size]
    for value in (topic_max, socket_max):
        if value is not None and value.isdigit():
            limits.append(int(value))
    if topic_max is None:
        log.warning(
            "%s: cannot read the topic's max.message.bytes; records are checked against"
            " max_request_size (%d) only",
            topic,
            max_request_size,
        )
    return min(limits)


class SizedPublisher:
    """A publisher's topics and their size limits. ``send_with`` measures a record against its
    topic's limit only when its value is longer than :attr:`_gate`, in one comparison."""

    def __init__(self, config: KafkaConfig, admin: Admin, oversized: Oversized | None) -> None:
        self._admin = admin
        self._topics_config = config.topics
        self._max_request_size = config.producer.max_request_size
        self._oversized = oversized
        self._limits: dict[str, int] = {}
        self._gate = self._max_request_size // 2 - 65_536
        """Records whose value is at most this long fit whatever their key and headers: only
        longer ones are measured against their topic's limit."""

    def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` when missing (``partitions``, by default ``[kafka.topics]``'s, and
        its replication) and learn the largest record it takes. Done again every session."""
        self._admin.create_topic(
            topic,
            partitions or self._topics_config.partitions,
            self._topics_config.replication_factor,
        )
        topic_max, socket_max = self._admin.topic_limits(topic)
        limit = record_limit(self._max_request_size, topic_max, socket_max, topic)
        self._limits[topic] = limit
        self._gate = min(self._gate, limit // 2 - 65_536)

    def _fitted(self, record: Record) -> Record | None:
        """``record`` as :class:`Oversized` makes it fit its topic; None when it is left out."""
        assert self._oversized is not None
        return self._oversized.check(record, self._limits[record.topic])
