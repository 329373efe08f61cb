"""Which topics and partitions a sink reads: its globs as one pattern, watched for new topics."""

from __future__ import annotations

__all__ = ["TOPIC_LOOK_S", "TopicWatch", "partitions_of", "subscription_pattern"]

import fnmatch
import logging
import re
import threading
from collections.abc import Iterable, Sequence

from cdc.errors import CdcError, describe
from cdc.kafka import Admin, TopicPartition
from cdc.logs import adopt_worker, current_worker
from cdc.sink.target import Partition

log = logging.getLogger(__name__)

TOPIC_LOOK_S = 5.0


def subscription_pattern(globs: Sequence[str]) -> str:
    """One regex for the topic globs, never matching dead-letter topics."""
    # fnmatch.translate anchors each glob at the end; the consumer matches from the start.
    alternatives = "|".join(fnmatch.translate(g) for g in globs)
    return f"(?!.*[.]dlq$)(?:{alternatives})"


class TopicWatch:
    """The topics matching a sink's globs and their partitions' offset range, looked up every
    ``TOPIC_LOOK_S`` on a thread of its own with a client of its own. kafka-python's metadata
    and offset requests block: made on the consuming thread, every few seconds they held back
    the batches behind them."""

    def __init__(
        self,
        client: Admin,
        pattern: re.Pattern[str],
        names: Sequence[str] | None = None,
    ) -> None:
        self.found: set[str] | None = None
        """None until the first listing; then replaced whole (never mutated) on each look."""
        self.ranges: dict[Partition, tuple[int, int]] = {}
        """(first offset, next offset to be written) of every partition of ``found``."""
        self._client = client
        self._pattern = pattern
        self._names = names
        """The topics, when the sink names them plainly: then only they are asked for, not the
        metadata of every topic in the cluster (tens of ms of Python with thousands)."""
        self._closed = threading.Event()
        self._worker = current_worker()  # its lines are the sink's (cdc.logs)
        self._thread = threading.Thread(target=self._run, name="cdc-topics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        adopt_worker(self._worker)
        while not self._closed.is_set():
            try:
                self._look()
            except CdcError as e:  # the consumer sees the same outage
                log.debug("listing topics failed: %s", describe(e))
            except Exception:  # a client bug must not end the watch: no new topic would be read
                log.exception("listing topics failed")
            self._closed.wait(TOPIC_LOOK_S)

    def _look(self) -> None:
        client = self._client
        if self._names is not None:
            # Each name's partitions asked once: the lookup is what tells that it exists.
            known = {t: client.partitions_for_topic(t) for t in self._names}
            found = {t for t, p in known.items() if p}
            partitions = [TopicPartition(t, p) for t in sorted(found) for p in known[t] or ()]
        else:
            found = {t for t in client.topics() if self._pattern.match(t)}
            partitions = partitions_of(client, found)
        self.found = found  # the subscription needs no offsets: a new topic is read at once
        first = client.beginning_offsets(partitions)
        end = client.end_offsets(partitions)
        self.ranges = {(tp.topic, tp.partition): (first[tp], end[tp]) for tp in partitions}

    def close(self) -> None:
        self._closed.set()
        self._thread.join(1.0)  # a look in flight may take long when Kafka is away: no wait
        if not self._thread.is_alive():
            self._client.close()


def partitions_of(client: Admin, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, in topic order, as the client's metadata knows them."""
    return [
        TopicPartition(t, p) for t in sorted(topics) for p in client.partitions_for_topic(t) or ()
    ]
