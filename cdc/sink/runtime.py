"""The sink runtime: consume the topics, apply each batch atomically with its offsets, dead-letter.

Reading top to bottom: :meth:`SinkRuntime.run` polls a batch of records, parses each
(:func:`cdc.records.parse_record`), and hands the events with the batch's next offsets to the
:class:`Target`, which applies both in one transaction of the target store. That apply runs on an
applier thread while the next batch is polled and parsed; batches are applied one at a time, in
order. Records that cannot be applied go to ``{topic}.dlq`` (:mod:`cdc.sink.dlq`) *inside* that
transaction's commit step, so an offset is never stored past a record that is neither applied
nor dead-lettered. Kafka is reached only through :mod:`cdc.kafka`'s Protocols.

Resume rule: the consumer group only distributes partitions; positions live in the target. After
every assignment the runtime seeks each partition to the offset stored there (the beginning when
none is) before it applies any record of it, so a sink that crashed anywhere resumes right after
the last batch it committed. kafka-python runs rebalance callbacks on its own thread, so they only
mark partitions as needing that seek; the seek itself happens on the runtime's thread once the
batch in flight has committed, and no two threads ever use the target at once.
"""

from __future__ import annotations

__all__ = ["Progress", "SinkRuntime"]

import contextlib
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from cdc.config import KafkaConfig
from cdc.errors import CdcError, KafkaUnavailable, describe
from cdc.events import OUTBOX_HEADER
from cdc.globs import is_plain
from cdc.kafka import (
    ConsumedRecord,
    Consumer,
    LeaderUnknown,
    PartitionRevoked,
    TopicPartition,
    open_admin,
    open_consumer,
    open_publisher,
)
from cdc.logs import adopt_worker, current_worker
from cdc.metrics import BATCH_SECONDS
from cdc.records import BadRecord, SinkEvent, parse_record
from cdc.retry import Backoff, Stopped, retried
from cdc.sink.dlq import DeadLetters
from cdc.sink.plan import BatchPlan
from cdc.sink.stats import SinkStats
from cdc.sink.target import (
    Partition,
    Rejected,
    Target,
    TargetUnavailable,
    partition_names,
)
from cdc.sink.watch import TOPIC_LOOK_S, TopicWatch, subscription_pattern
from cdc.transforms.transactions import is_boundary_or_message

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0
STALL_S = 30.0
SWITCH_INTERVAL_S = 0.0005


class _Prepared(NamedTuple):
    batch: dict[TopicPartition, list[ConsumedRecord]]
    events: list[SinkEvent]
    bad: list[Rejected]
    offsets: dict[Partition, int]
    plan: BatchPlan | None
    """What the target's ``plan`` made of the events (see :class:`Target`); None without any."""
    counts: Counter[tuple[str, str, str]]
    """``(schema, table, op)`` -> events, for ``/metrics``."""
    newest_ts_ms: int
    """The newest source commit time of the events (each partition's last one)."""


class Progress:
    """Notices partitions whose records wait while the group applies none of them.

    kafka-python 3.0's consumer was seen to stop fetching a partition it was assigned (after
    quick successive rebalances; also dpkp/kafka-python#3106 and #3131) and, once, to leave the
    group's partitions unread after the subscription grew: the sinks then waited forever with
    nothing in the log. Progress is judged from what the target stored, which every member of
    the group writes, so a member notices a partition stuck at any member; the cure is a new
    session, whose rebalance hands every partition out again.
    """

    def __init__(self) -> None:
        self._seen: dict[Partition, tuple[int | None, float]] = {}

    def reset(self) -> None:
        """Start every clock again (a new session, or the target was away)."""
        self._seen.clear()

    def stuck(
        self,
        ranges: dict[Partition, tuple[int, int]],
        stored: dict[Partition, int],
        now: float,
        after_s: float,
    ) -> list[Partition]:
        """Partitions with records past the stored offset and no stored progress for
        ``after_s``."""
        found = []
        seen = {}
        for partition, (first, end) in ranges.items():
            at = stored.get(partition)
            if max(at or 0, first) >= end:
                continue  # nothing waits
            was, since = self._seen.get(partition, (at, now))
            if was != at:
                since = now
            seen[partition] = (at, since)
            if now - since >= after_s:
                found.append(partition)
        self._seen = seen
        return sorted(found)


class _Unseek:
    """Forget that partitions were positioned. Runs on kafka-python's thread: touches nothing
    else."""

    def __init__(self, runtime: SinkRuntime) -> None:
        self.runtime = runtime

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.runtime.rebalances += 1
        self.runtime.positioned.difference_update(revoked)
        positions = self.runtime.stats.positions
        for tp in revoked:
            positions.pop((tp.topic, tp.partition), None)
        log.info("%s: partitions revoked: %s", self.runtime.subject, partition_names(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.runtime.rebalances += 1
        self.runtime.positioned.difference_update(assigned)
        log.info("%s: partitions assigned: %s", self.runtime.subject, partition_names(assigned))


class SinkRuntime:
    """Consumes a sink's topics into its :class:`Target` until stopped."""

    def __init__(
        self,
        name: str,
        group_id: str,
        topics: Sequence[str],
        kafka: KafkaConfig,
        target_factory: Callable[[], Target],
        batch_records: int = 5000,
        stats: SinkStats | None = None,
    ) -> None:
        self.subject = f"sink {name}"
        self.stats = stats or SinkStats(name)
        """What it counts for ``/metrics`` (kept by the sink across restarts)."""
        self._apply_seconds = BATCH_SECONDS.labels(sink=name)
        self.group_id = group_id
        self.pattern = subscription_pattern(topics)
        self.names = list(topics) if all(map(is_plain, topics)) else None
        """The topics, when they are plain names rather than globs."""
        self.kafka = kafka
        self.target_factory = target_factory
        self.batch_records = batch_records
        self.target: Target | None = None
        self.consumer: Consumer | None = None
        self.dead: DeadLetters | None = None
        self.progress = Progress()
        self._inflight: Future[None] | None = None
        self._held: list[_Prepared] = []
        """The batch in flight, the only reference to it once applied (see :meth:`_settle`)."""
        self.positioned: set[TopicPartition] = set()
        """Partitions sought to their stored offset since their last assignment (set ops are
        atomic, and the rebalance thread only removes)."""
        self.rebalances = 0
        """Assignment changes seen by the rebalance listener (written by its thread only)."""
        self._skipped_topics: set[str] = set()
        """Topics whose records that are no row change were skipped (logged once each)."""

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        """Consume until ``stop``; a lost Kafka or target restarts the session with backoff.

        ``started`` is set once a session has its consumer and target (:class:`cdc.plugins.Sink`);
        a permanent error (:class:`cdc.errors.Refused`) is raised, never retried here."""
        # The applying thread waits for the target with the GIL released and needs it back for
        # each statement's result; at Python's 5 ms switch interval it waited up to that long
        # behind the consuming thread's parsing every time, with the target idle meanwhile.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        try:
            retried(
                lambda: self._counted_session(stop, started),
                stop=stop,
                retry_on=CdcError,
                when=lambda e: isinstance(e, CdcError) and e.retriable,
                log=log,
                what=self.subject,
                backoff=Backoff(max_s=BACKOFF_MAX_S, reset_after_s=BACKOFF_MAX_S * 2),
            )
        except Stopped:
            return

    def _counted_session(self, stop: threading.Event, started: threading.Event | None) -> None:
        self.stats.sessions += 1
        try:
            self._session(stop, started)
        except Exception as e:
            self.stats.failed(e, describe(e))
            raise

    def _session(self, stop: threading.Event, started: threading.Event | None) -> None:
        with contextlib.ExitStack() as opened:
            self.consumer = open_consumer(
                self.kafka, self.group_id, self.seek_to_stored, self.batch_records
            )
            opened.callback(self.consumer.close)
            # The DLQ is written with kafka-python whatever the consumer's client: one record
            # now and then, waited for.
            publisher = open_publisher(self.kafka, client="kafka-python")
            self.dead = DeadLetters(self.subject, publisher)
            opened.callback(self.dead.close)
            watch = TopicWatch(open_admin(self.kafka), re.compile(self.pattern), self.names)
            opened.callback(watch.close)
            self.positioned.clear()
            self.progress.reset()
            self.target = self._connect_target(stop)
            opened.callback(self._close_target)
            if started is not None:
                started.set()
            self.stats.positions.clear()
            self.stats.consuming()
            self._consume(stop, watch)

    def _consume(self, stop: threading.Event, watch: TopicWatch) -> None:
        """Poll and parse here while the previous batch is applied on the applier thread: the
        target's own work (a PostgreSQL backend, SQLite's I/O) overlaps ours. Batches are still
        applied one at a time, in order, and every other use of the target waits for the batch
        in flight first (:meth:`_settle`), so stored offsets are read only once it committed."""
        applier = ThreadPoolExecutor(  # its lines are the sink's (cdc.logs)
            1,
            thread_name_prefix="cdc-apply",
            initializer=adopt_worker,
            initargs=(current_worker(),),
        )
        try:
            self._poll_loop(stop, watch, applier)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._settle()
            raise
        else:
            self._settle()
        finally:
            applier.shutdown(wait=True)

    def _poll_loop(
        self, stop: threading.Event, watch: TopicWatch, applier: ThreadPoolExecutor
    ) -> None:
        assert self.consumer is not None
        log.info("%s: consuming topics matching %s", self.subject, self.pattern)
        topics: set[str] = set()
        next_look = 0.0
        stats = self.stats
        stats.watch = watch
        while not stop.is_set():
            stats.turned = time.monotonic()
            if time.monotonic() >= next_look:
                self._restart_if_stuck(watch)
                next_look = time.monotonic() + TOPIC_LOOK_S
            # The subscription is an explicit list, renewed when topics appear: kafka-python's
            # pattern subscription was seen to leave a member without partitions after the
            # first matching topics were created.
            found = watch.found
            if found is not None and found != topics:
                topics = found
                log.info("%s: subscribing to %s", self.subject, ", ".join(sorted(topics)))
                self.consumer.subscribe(topics=sorted(topics), listener=_Unseek(self))
            if not topics:
                stop.wait(0.5)
                continue
            batch = self.consumer.poll(timeout_ms=200, max_records=self.batch_records)
            unpositioned = [tp for tp in self.consumer.assignment() if tp not in self.positioned]
            if unpositioned:
                # Records read before the seek came from the wrong place: drop them.
                batch = {tp: rs for tp, rs in batch.items() if tp in self.positioned}
                try:
                    self.seek_to_stored(unpositioned)
                except TargetUnavailable as e:
                    log.warning("%s: %s; reconnecting", self.subject, e)
                    stop.wait(1.0)
                    self._reconnect_target(stop)
            if batch:
                prepared = [self._prepare(batch)]
                del batch
                self._settle()
                self._inflight = applier.submit(self._apply, prepared, stop)
                self._held = prepared
                del prepared

    def _settle(self) -> None:
        """Wait until the batch in flight is applied (or given up on stopping); raise its
        error."""
        inflight, self._inflight = self._inflight, None
        try:
            if inflight is not None:
                inflight.result()
        finally:
            # The batch is freed here, on the consuming thread, which has time to spare, not on
            # the applying thread, which has none.
            self._held.clear()

    def _restart_if_stuck(self, watch: TopicWatch) -> None:
        """A new session when records have waited ``STALL_S`` with none applied (see
        :class:`Progress`)."""
        if not watch.ranges:
            return
        self._settle()
        assert self.target is not None
        try:
            stored = self.target.stored_offsets(self.group_id, list(watch.ranges))
        except TargetUnavailable as e:
            self.progress.reset()  # the next batch or seek finds the target away and waits
            self.stats.unreachable(e)  # /readyz says so, also while no record comes
            return
        self.stats.problem = None
        stuck = self.progress.stuck(watch.ranges, stored, time.monotonic(), STALL_S)
        if stuck:
            raise KafkaUnavailable(
                f"no record of {partition_names(stuck)} applied for"
                f" {STALL_S:.0f} s while records wait there: a new consumer session"
            )

    def _close_target(self) -> None:
        if self.target is not None:
            with contextlib.suppress(Exception):
                self.target.close()
            self.target = None

    def _connect_target(self, stop: threading.Event) -> Target:
        target = retried(
            self.target_factory,
            stop=stop,
            retry_on=TargetUnavailable,
            log=log,
            what=self.subject,
            backoff=Backoff(max_s=BACKOFF_MAX_S),
            before_retry=self.stats.unreachable,
        )
        self.stats.problem = None
        return target

    def _reconnect_target(self, stop: threading.Event) -> None:
        self._close_target()  # it is broken already; closing is courtesy
        self.target = self._connect_target(stop)

    def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        """Position each assigned partition right after the last batch the target committed."""
        rebalances = self.rebalances
        self._settle()
        assert self.consumer is not None
        assert self.target is not None
        stored = self.target.stored_offsets(
            self.group_id, [(tp.topic, tp.partition) for tp in assigned]
        )
        fresh = []
        sought = []
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                fresh.append(tp)
            elif self._seek(tp, offset):
                sought.append(tp)
                self.stats.positions[tp.topic, tp.partition] = offset
        if fresh:
            # Explicit offsets rather than seek_to_beginning: kafka-python's lazy reset was
            # seen to leave a consumer fetching nothing, spinning.
            try:
                beginnings = self.consumer.beginning_offsets(fresh)
            except LeaderUnknown as e:
                # Left unpositioned, so the next poll asks again (and drops their records).
                log.info("%s: %s; positioning it later", self.subject, describe(e))
                beginnings = {}
            for tp, offset in beginnings.items():
                if self._seek(tp, offset):
                    sought.append(tp)
                    self.stats.positions[tp.topic, tp.partition] = offset
        self.positioned.update(sought)
        if self.rebalances != rebalances:
            # A partition revoked and assigned again meanwhile lost its seek with its old
            # assignment: marked positioned, it would be read from the beginning. The next poll
            # positions whatever is assigned then (a rebalance after this line unmarks its own).
            self.positioned.difference_update(sought)
            log.info(
                "%s: the assignment changed while positioning; positioning again", self.subject
            )
            return
        log.info("%s: positioned %s at the stored offsets", self.subject, partition_names(sought))

    def _seek(self, tp: TopicPartition, offset: int) -> bool:
        """Seek ``tp``; False when a rebalance took it away meanwhile (kafka-python changes the
        assignment on its own thread, at any moment); its next assignment positions it again."""
        assert self.consumer is not None
        try:
            self.consumer.seek(tp, offset)
        except PartitionRevoked:
            log.info("%s: %s[%d] was revoked while being positioned", self.subject, *tp)
            return False
        return True

    def _prepare(self, batch: dict[TopicPartition, list[ConsumedRecord]]) -> _Prepared:
        """Parse a polled batch: the events, the records no sink can apply, the next offsets."""
        events: list[SinkEvent] = []
        bad: list[Rejected] = []
        offsets: dict[Partition, int] = {}
        newest_ts_ms = 0
        for tp, records in batch.items():
            for r in records:
                try:
                    event = parse_record(
                        tp.topic, tp.partition, r.offset, r.key, r.value, r.headers
                    )
                except BadRecord as e:
                    if is_boundary_or_message(r.value) or any(
                        name == OUTBOX_HEADER for name, _ in r.headers
                    ):
                        # Not a row change (its topic matched the sink's globs): a boundary,
                        # a message or an outbox event. Nothing to apply, and not an error
                        # either; its offset advances with the batch.
                        self._skip(tp.topic)
                        continue
                    headers = list(r.headers)
                    bad.append(
                        Rejected(tp.topic, tp.partition, r.offset, r.key, r.value, headers, str(e))
                    )
                else:
                    if event is not None:
                        events.append(event)
            offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
            if events:
                newest_ts_ms = max(newest_ts_ms, events[-1].commit_ts_ms)
        assert self.target is not None
        plan = self.target.plan(events) if events else None
        counts = Counter([(e.schema, e.table, e.op) for e in events])
        return _Prepared(batch, events, bad, offsets, plan, counts, newest_ts_ms)

    def _skip(self, topic: str) -> None:
        self.stats.skipped += 1
        if topic not in self._skipped_topics:
            self._skipped_topics.add(topic)
            log.info(
                "%s: %s holds transaction boundaries or logical decoding messages, not row"
                " changes: skipped (cdc_sink_skipped_records_total counts them)",
                self.subject,
                topic,
            )

    def _apply(self, held: list[_Prepared], stop: threading.Event) -> None:
        """Apply a batch with its offsets, retrying while the target or the DLQ is away."""
        batch, events, bad, offsets, plan, counts, newest_ts_ms = held[0]
        stats = self.stats
        stats.applying_since = time.monotonic()
        refused: Counter[tuple[str, str, str]] = Counter()
        """Events the target rejected in the attempt that committed (each attempt says anew)."""

        def before_commit(rejected: list[tuple[SinkEvent, str]]) -> None:
            dead = list(bad)
            # The records behind the events the target rejected: indexed only when there are some.
            raw = (
                {(tp.topic, tp.partition, r.offset): r for tp, rs in batch.items() for r in rs}
                if rejected
                else {}
            )
            refused.clear()
            for event, reason in rejected:
                refused[event.schema, event.table, event.op] += 1  # dead-lettered, not applied
                r = raw[(event.topic, event.partition, event.offset)]
                dead.append(
                    Rejected(
                        event.topic,
                        event.partition,
                        event.offset,
                        r.key,
                        r.value,
                        list(r.headers),
                        reason,
                    )
                )
            if dead:
                assert self.dead is not None
                self.dead.write(dead)  # in Kafka before the offset moves past them
                stats.dead_lettered += len(dead)

        def apply() -> None:
            assert self.target is not None
            began = time.perf_counter()
            self.target.apply(self.group_id, events, offsets, before_commit, plan)
            self._apply_seconds.observe(time.perf_counter() - began)

        def again(e: BaseException) -> None:
            # The store (or the DLQ) is down, not the records: the same batch again.
            self.progress.reset()  # nobody's fault that nothing was applied meanwhile
            stats.target_retries += 1
            stats.problem = describe(e)
            if isinstance(e, TargetUnavailable):
                self._reconnect_target(stop)

        try:
            retried(
                apply,
                stop=stop,
                retry_on=(TargetUnavailable, KafkaUnavailable),
                log=log,
                what=self.subject,
                backoff=Backoff(max_s=BACKOFF_MAX_S),
                before_retry=again,
            )
        except Stopped:
            return  # stopping: the batch was not committed and will be read again
        finally:
            stats.applying_since = None
        stats.batches += 1
        counts.subtract(refused)
        stats.applied.update(counts)
        positions = stats.positions
        for partition, offset in offsets.items():
            if partition in positions:  # else revoked meanwhile: another member's now
                positions[partition] = offset
        stats.newest_ts_ms = max(stats.newest_ts_ms, newest_ts_ms)
        if stats.state == "consuming":
            stats.problem = None
