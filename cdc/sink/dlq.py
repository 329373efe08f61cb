"""The dead-letter queue: records a sink cannot apply go to ``{topic}.dlq`` with their reason.

Guarantee: :meth:`DeadLetters.write` returns only once Kafka acked every record given, so the
caller may store offsets past them (it does so in the same step, inside its target's commit).
"""

from __future__ import annotations

__all__ = ["DLQ_HEADER_PREFIX", "DeadLetters"]

import logging
import time

from cdc.errors import CdcError, KafkaUnavailable, describe
from cdc.events import Record
from cdc.kafka import Publisher
from cdc.sink.target import DLQ_SUFFIX, Rejected

log = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "cdc-dlq-"
WAIT_S = 30.0


class DeadLetters:
    """Writes a sink's rejected records to their topics' dead-letter topics (one partition
    each, created when missing), each with ``cdc-dlq-*`` headers saying where it came from and
    why it was rejected."""

    def __init__(self, subject: str, publisher: Publisher) -> None:
        self.subject = subject
        self.publisher = publisher
        self._topics: set[str] = set()

    def write(self, dead: list[Rejected]) -> None:
        """Send ``dead`` and wait until Kafka has every record; :class:`KafkaUnavailable` when
        it did not take one within ``WAIT_S``."""
        acked = 0
        errors: list[Exception] = []

        def on_ack() -> None:
            nonlocal acked
            acked += 1

        callback = self.publisher.callback(on_ack, errors.append)
        try:
            for topic in {d.topic + DLQ_SUFFIX for d in dead} - self._topics:
                self.publisher.ensure_topic(topic, partitions=1)
                self._topics.add(topic)
            for d in dead:
                log.warning(
                    "%s: %s[%d]@%d to the DLQ: %s",
                    self.subject,
                    d.topic,
                    d.partition,
                    d.offset,
                    d.reason,
                )
                self.publisher.send_with(_letter(d), callback)
            self.publisher.flush(WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while acked + len(errors) < len(dead) and time.monotonic() < deadline:
                self.publisher.poll(0.01)
        except CdcError as e:
            raise KafkaUnavailable(f"dead-letter topic did not take a record: {describe(e)}") from e
        if errors:
            raise KafkaUnavailable(
                f"dead-letter topic did not take a record: {describe(errors[0])}"
            ) from errors[0]
        if acked < len(dead):
            raise KafkaUnavailable(
                f"dead-letter topic did not ack {len(dead) - acked} record(s) in {WAIT_S:g} s"
            )

    def close(self) -> None:
        self.publisher.close(5.0)


def _letter(d: Rejected) -> Record:
    """The record as it goes to the DLQ: its own headers (but earlier ``cdc-dlq-*`` ones), then
    where it came from and why it was rejected."""
    headers = [h for h in d.headers if not h[0].startswith(DLQ_HEADER_PREFIX)] + [
        ("cdc-dlq-reason", d.reason.encode()),
        ("cdc-dlq-topic", d.topic.encode()),
        ("cdc-dlq-partition", str(d.partition).encode()),
        ("cdc-dlq-offset", str(d.offset).encode()),
    ]
    return Record(d.topic + DLQ_SUFFIX, d.key, d.value, headers)
