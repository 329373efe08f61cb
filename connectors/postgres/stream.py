"""The streaming hop: replication messages -> decoder -> events -> Kafka, and back to PostgreSQL
the position Kafka has fully acked.

:func:`stream` is the hot loop, kept in one function for speed: read messages, decode them,
publish each change's record without waiting. Around it, and called once per read rather than
per message: :class:`Confirmation` (what is confirmed to PostgreSQL, and when, heartbeats
included), the snapshot hooks (:class:`SnapshotHooks`) and the table watch (:class:`TableHooks`).
Everything it is given is typed by a Protocol here, so fakes in tests are checked like the real
parts.

Resume rule: the confirmed position only ever moves to the end of a transaction whose every
record Kafka acked (or, when nothing at all is in flight, to the server's reported end of WAL); a
crash re-publishes at most the unconfirmed suffix, with the same event ids. With the transaction
topic, a transaction's END record is sent once the rest of it is acked, and the transaction is
delivered only once the END is acked too (:mod:`cdc.transforms.transactions`). A
non-transactional logical decoding message is a transaction of its own, ending at its LSN.
"""

from __future__ import annotations

__all__ = [
    "CONFIRM_BUSY_S",
    "CONFIRM_IDLE_S",
    "Confirmation",
    "Counts",
    "Publisher",
    "Replication",
    "SnapshotHooks",
    "StreamSettings",
    "TableHooks",
    "stream",
]

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cdc.acks import AckTracker, DeliveryWatch, Txn
from cdc.errors import CdcError, KafkaUnavailable, Refused, describe
from cdc.events import Change, Record, SourceInfo, encode, tombstone
from cdc.kafka import BUFFER_BYTES, ConfluentPublisher
from cdc.transforms import TableShape
from cdc.transforms.messages import Messages
from cdc.transforms.transactions import Boundaries
from connectors.postgres.decoders import Decoder
from connectors.postgres.decoding import Begin, Commit, Message
from connectors.postgres.replication import (
    XLOGDATA,
    XLOGDATA_PAYLOAD,
    Keepalive,
    format_lsn,
    parse_message,
    xlog_start,
)

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 10.0
CONFIRM_BUSY_S = 1.0
CONFIRM_IDLE_S = 0.1
"""How often a newly confirmed position is sent to PostgreSQL: at most once a second while
records are in flight, and within 0.1 s once everything read is on Kafka, so that the slot shows
a burst delivered (and lets its WAL go) when it is, not up to a second later."""
STOP_FLUSH_S = 5.0
PROGRESS_LOG_S = 30.0
GATHER_S = 0.001
"""When a read had to wait for the server and then brought only a few messages, wait this long
for more before handling them: each wake-up of the reading thread costs, and this is well inside
the producer's linger. Never while messages are already waiting: a backlog of large messages comes
a few per read, and sleeping between those reads would cut the throughput."""
GATHER_BELOW = 50
TABLES_LOOK_S = 5.0
"""How often the stream loop looks for captured tables that appeared (to add them to a
publication kept by the connector) and for partitions attached or detached: one or two catalog
queries."""


class Replication(Protocol):
    """The replication connection as the loop uses it (``ReplicationConnection``)."""

    @property
    def waited(self) -> bool:
        """The last :meth:`read` had to wait for the server."""
        ...

    def read(self, timeout_s: float) -> list[bytes]: ...

    def send_status(self, written: int, flushed: int, applied: int) -> None: ...


class Publisher(Protocol):
    """Kafka as the loop uses it (:mod:`cdc.kafka`'s publishers): sends without waiting, calls
    back on ack or failure from :meth:`poll`."""

    @property
    def unacked_bytes(self) -> int: ...

    def callback(
        self, on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> Any: ...

    def send_with(self, record: Record, callback: Any) -> None: ...

    def poll(self, timeout_s: float = 0.0) -> None: ...

    def flush(self, timeout_s: float) -> None: ...


class SnapshotHooks(Protocol):
    """Incremental snapshots as the loop drives them (``IncrementalSnapshots``)."""

    def on_change(self, change: Change, txn_end: int) -> list[Change] | None:
        """Every decoded change, in the transaction that ends at ``txn_end``. None: publish it;
        else it was a signal, not published, and the list holds what to publish instead."""
        ...

    def reread(self, schema: str, table: str, why: str) -> None: ...

    def tick(self, confirmed: int) -> None:
        """Between reads, with the position confirmed so far."""
        ...


class TableHooks(Protocol):
    """What the loop does when the database's tables change under it."""

    looked: float
    """When :meth:`look` last ran (``time.monotonic``)."""

    def look(self, now: float) -> None: ...

    def truncated(self, truncated: dict[tuple[str, str], set[tuple[str, str]]]) -> None: ...


class Counts(Protocol):
    """Where the loop counts what it did, across sessions, for ``/metrics``
    (:class:`~connectors.postgres.stats.SourceStats`)."""

    published: int
    acked: int
    by_table: defaultdict[tuple[str, str, str], int]
    transactions: int
    acked_ts_ms: int
    in_flight: int
    caught_up: bool
    caught_up_at: float
    wal_end: int
    last_event: float
    confirmed: int
    kafka_out_since: float | None
    turned: float


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What the loop needs of the configuration, read once."""

    subject: str
    """``connector NAME``, for log lines and errors."""
    tombstones: bool = True
    """A delete's record is followed by a tombstone (``tombstones``)."""
    max_unacked: int = 100_000
    """Reading waits while this many records are unacked (``max_unacked_records``)."""
    shape: Callable[[str, str], TableShape | None] | None = None
    """A table's transforms (:meth:`cdc.transforms.Transforms.lookup`); None: no table has any."""
    messages: Messages | None = None
    """Logical decoding messages to publish (``[[connectors.messages]]``); None: none is
    decoded."""
    transaction_topic: bool = False
    """BEGIN and END records on ``{topic_prefix}.transaction`` (``transaction_topic``)."""
    skipped: frozenset[str] = frozenset()
    """Operations not published (``skipped_operations``)."""


class Confirmation:
    """The positions told to PostgreSQL, and when: confirmed (everything before it is on
    Kafka), flushed (the confirmed position last sent), the server's end of WAL, and the
    heartbeat that lets an idle slot's WAL go.

    Confirmed carries over sessions: a session starts at the slot's confirmed position, which
    never passes it.
    """

    def __init__(self, heartbeat_s: float = 0.0, heartbeat: Callable[[], object] | None = None):
        self.confirmed = 0
        self.heartbeat_s = heartbeat_s
        self.heartbeat = heartbeat
        """Runs the heartbeat query (None: no query, only the idle advance)."""
        self.status_every = (
            min(STATUS_INTERVAL_S, heartbeat_s) if heartbeat_s else STATUS_INTERVAL_S
        )
        self.session(time.monotonic())

    def session(self, now: float) -> None:
        """A new replication session: nothing received or sent in it yet."""
        self.received = self.server_end = self.flushed = 0
        self.reply_now = False
        self.last_status = self.last_heartbeat = now

    def keepalive(self, msg: Keepalive) -> None:
        self.server_end = max(self.server_end, msg.wal_end)
        self.reply_now = self.reply_now or msg.reply_requested

    def acked(self, position: int | None, idle: bool) -> None:
        """``position``: where everything Kafka acked ends (None: nothing new); ``idle``:
        nothing is in flight and no transaction is open."""
        if position is not None and position > self.confirmed:
            self.confirmed = position
        if self.heartbeat_s and idle and self.server_end > self.confirmed:
            # The server has sent everything before server_end and none of it is in flight:
            # confirming it lets the server recycle WAL that holds nothing for us.
            self.confirmed = self.server_end

    def tick(self, repl: Replication, now: float, idle: bool) -> None:
        """The heartbeat query when due; a status message when asked for, when due, or soon
        after the confirmed position moved (sooner when ``idle``: every record is acked)."""
        if (
            self.heartbeat is not None
            and self.heartbeat_s
            and now - self.last_heartbeat >= (self.heartbeat_s)
        ):
            self.heartbeat()
            self.last_heartbeat = now
        if (
            self.reply_now
            or now - self.last_status >= self.status_every
            or (
                self.confirmed > self.flushed
                and now - self.last_status >= (CONFIRM_IDLE_S if idle else CONFIRM_BUSY_S)
            )
        ):
            self.send(repl)
            self.last_status = now

    def send(self, repl: Replication) -> None:
        # flushed = confirmed: the server may now forget everything before it.
        repl.send_status(max(self.received, self.confirmed), self.confirmed, self.confirmed)
        self.flushed = self.confirmed
        self.reply_now = False


def stream(  # noqa: PLR0912, PLR0915  (the hot loop reads best in one piece)
    stop: threading.Event,
    repl: Replication,
    decoder: Decoder,
    source: SourceInfo,
    publisher: Publisher,
    snapshots: SnapshotHooks,
    confirmation: Confirmation,
    counts: Counts,
    delivery: DeliveryWatch,
    settings: StreamSettings,
    tables: TableHooks | None = None,
) -> None:
    """Stream until ``stop``; on the way out, give Kafka a few seconds and confirm what it
    acked. Raises on a delivery failure (retriable unless refused) or a malformed stream."""
    subject = settings.subject
    tracker = AckTracker()
    errors: deque[Exception] = deque()
    txn: Txn | None = None
    received = 0
    now = time.monotonic()
    confirmation.session(now)
    last_progress = now
    published_at_progress = counts.published
    acked_before = counts.acked
    transactions_before = counts.transactions
    by_table = counts.by_table
    delivery.session(tracker, last_progress)
    watch = delivery.tick

    def waiting() -> None:
        # librdkafka's queue is full and send_with waits for room: the loop below is not
        # turning, so the outage would go unsaid (and unknown to cdc status) without this.
        tracker.count()
        watch(tracker, time.monotonic())
        counts.kafka_out_since = delivery.out_since

    if isinstance(publisher, ConfluentPublisher):
        publisher.on_wait = waiting
    tombstones = settings.tombstones
    skipped = settings.skipped
    max_unacked = settings.max_unacked
    message_rules = settings.messages
    # The decoder drops the plugin's messages (and gives them no index) unless they are wanted.
    decoder.messages = message_rules is not None
    boundaries = Boundaries(source) if settings.transaction_topic else None
    ending: deque[tuple[Txn, Record]] = deque()
    """Transactions read whose END record waits for the rest of them to be acked, in commit
    order."""

    # Looked up once per session: the per-message path makes no attribute lookups it can avoid.
    sent, acked, failed = tracker.sent, tracker.acked, errors.append
    make_callback, send_with = publisher.callback, publisher.send_with
    decode, on_change, keepalive = decoder.decode, snapshots.on_change, confirmation.keepalive

    def publish(record: Record, txn: Txn) -> None:
        sent(txn)
        # The callback only queues the ack: counting happens on this thread (cdc.acks).
        callback = txn.callback
        if callback is None:
            callback = txn.callback = make_callback(acked, failed, txn)
        send_with(record, callback)

    shape_of = settings.shape

    def shaped(shape: TableShape, change: Change, txn: Txn, now_ms: int, own: bool = True) -> None:
        # A table with transforms: any number of records (none when filtered out). ``own``
        # False: incremental snapshot reads, which are not the transaction's events.
        records = shape.records(change, source, now_ms, tombstones)
        if records and boundaries is not None and own:
            counted = sum(r.value is not None for r in records)
            begin = boundaries.event(f"{change.schema}.{change.table}", counted)
            if begin is not None:
                publish(begin, txn)
        for record in records:
            publish(record, txn)
        if records:
            counts.published += 1
            by_table[change.schema, change.table, change.op] += 1
            if own:
                txn.ts_ms = change.commit_ts_ms

    def message(item: Message, txn: Txn | None, now_ms: int) -> None:
        assert message_rules is not None  # the decoder decodes none otherwise
        record = message_rules.record(item, source, now_ms)
        if item.transactional:
            if txn is None:
                raise CdcError(f"{subject}: a transactional message came outside a transaction")
            if record is None:
                return
            if boundaries is not None:
                begin = boundaries.event(item.prefix, 1)
                if begin is not None:
                    publish(begin, txn)
            publish(record, txn)
            counts.published += 1
            return
        if record is None:
            return
        # Between transactions: a transaction of its own, delivered once acked. Its end is the
        # message's LSN (the end of its WAL record): confirmed, the slot skips the message,
        # and nothing committed after it (a commit record may start right there).
        own = tracker.begin(item.lsn)
        publish(record, own)
        tracker.commit(own)
        counts.published += 1

    def end_acked() -> None:
        # END records of transactions whose every other record is acked, in commit order; the
        # transaction is delivered (confirmable) once its END is acked too.
        tracker.count()
        while ending and ending[0][0].pending == 0:
            done, end = ending.popleft()
            publish(end, done)
            tracker.commit(done)

    while not stop.is_set():
        if tracker.unacked >= max_unacked or publisher.unacked_bytes >= BUFFER_BYTES:
            # Backpressure: let Kafka catch up before reading more, but keep the
            # housekeeping below going so PostgreSQL keeps hearing from us.
            messages: list[bytes] = []
            publisher.poll(0.005)
        else:
            messages = repl.read(timeout_s=0.2)
            if repl.waited and 0 < len(messages) < GATHER_BELOW:
                time.sleep(GATHER_S)
                messages += repl.read(timeout_s=0)
        # The envelope's ts_ms (when the connector handled the event): one clock read per
        # read, not per event; a read's messages are handled within a few milliseconds.
        now_ms = int(time.time() * 1000)
        published_before = counts.published
        for buf in messages:
            if buf[0] != XLOGDATA:
                msg = parse_message(buf)
                if isinstance(msg, Keepalive):
                    keepalive(msg)
                continue
            start = xlog_start(buf)
            received = max(received, start)
            item = decode(buf[XLOGDATA_PAYLOAD:], start)
            if item is None:
                continue
            if isinstance(item, Begin):
                txn = tracker.begin(item.end_lsn)
                if boundaries is not None:
                    boundaries.begin(item.xid, item.commit_lsn, item.commit_ts_ms)
            elif isinstance(item, Commit):
                if txn is not None:
                    txn.end = item.end_lsn  # pgoutput says it only now
                    if boundaries is not None and (end := boundaries.end()) is not None:
                        ending.append((txn, end))  # sent once the rest of txn is acked
                    else:
                        tracker.commit(txn)
                txn = None
                if decoder.truncated and tables is not None:
                    tables.truncated(decoder.truncated)
            elif isinstance(item, Message):
                message(item, txn, now_ms)
            else:
                if txn is None:
                    raise CdcError(f"{subject}: a change came outside a transaction")
                for change in item if isinstance(item, tuple) else (item,):
                    reads = on_change(change, txn.end)
                    if reads is not None:  # a signal: its reads instead
                        for read in reads:
                            if shape_of is not None and (
                                shape := shape_of(read.schema, read.table)
                            ):
                                shaped(shape, read, txn, now_ms, False)
                                continue
                            publish(encode(read, source), txn)
                            counts.published += 1
                            by_table[read.schema, read.table, "r"] += 1
                        continue
                    if change.op in skipped:
                        continue
                    if shape_of is not None and (shape := shape_of(change.schema, change.table)):
                        shaped(shape, change, txn, now_ms)
                        continue
                    record = encode(change, source, now_ms)
                    if boundaries is not None and (
                        begin := boundaries.event(f"{change.schema}.{change.table}", 1)
                    ):
                        publish(begin, txn)
                    publish(record, txn)
                    if tombstones and change.op == "d":
                        publish(tombstone(record), txn)
                    counts.published += 1
                    by_table[change.schema, change.table, change.op] += 1
                    txn.ts_ms = change.commit_ts_ms

        if decoder.rereads:
            for schema, table, why in decoder.rereads:
                snapshots.reread(schema, table, why)
            decoder.rereads.clear()
        publisher.poll()
        if errors:
            raise _delivery_failed(errors[0])
        if ending:
            end_acked()
        confirmation.received = received
        confirmation.acked(tracker.confirmable(), txn is None and tracker.idle)
        counts.acked = acked_before + tracker.acked_records
        now = time.monotonic()
        watch(tracker, now)
        # For /metrics (connectors.postgres.stats): once per read, never per event.
        counts.transactions = transactions_before + tracker.transactions
        if tracker.confirmed_ts_ms:
            counts.acked_ts_ms = tracker.confirmed_ts_ms
        counts.in_flight = tracker.unacked
        counts.confirmed = confirmation.confirmed
        # Caught up: nothing queued here, nothing in flight, and the server decoded (its last
        # keepalive) as far as its WAL went at the last look, so no backlog hides behind.
        caught_up = (
            repl.waited
            and txn is None
            and tracker.idle
            and confirmation.server_end >= counts.wal_end
        )
        counts.caught_up = caught_up
        if caught_up:
            counts.caught_up_at = now_ms / 1000
        counts.kafka_out_since = delivery.out_since
        counts.turned = now
        if counts.published != published_before:
            counts.last_event = now_ms / 1000
        snapshots.tick(confirmation.confirmed)
        if tables is not None and now - tables.looked >= TABLES_LOOK_S:
            tables.look(now)
        confirmation.tick(repl, now, tracker.idle)
        if now - last_progress >= PROGRESS_LOG_S:
            rate = (counts.published - published_at_progress) / (now - last_progress)
            log.info(
                "%s: %d events published (%.0f/s); Kafka acked %d records (tombstones"
                " included), %d waiting; confirmed LSN %s",
                subject,
                counts.published,
                rate,
                counts.acked,
                tracker.unacked,
                format_lsn(confirmation.confirmed),
            )
            last_progress, published_at_progress = now, counts.published

    # Stop reading; give in-flight records a few seconds, then confirm only what was acked.
    try:
        publisher.flush(STOP_FLUSH_S)
        if ending:  # transactions acked but for their END: send it, and wait for it
            end_acked()
            publisher.flush(STOP_FLUSH_S)
    except CdcError as e:
        log.warning("%s: stopping with records undelivered (%s)", subject, e)
    confirmation.received = received
    confirmation.acked(tracker.confirmable(), idle=False)
    confirmation.send(repl)
    log.info("%s: stopped at confirmed LSN %s", subject, format_lsn(confirmation.confirmed))


def _delivery_failed(e: Exception) -> CdcError:
    if isinstance(e, Refused):
        return e  # ACLs refused: a person must act (the supervisor says so)
    # Retriable: the session restarts from the slot's confirmed position and publishes again.
    return KafkaUnavailable(f"Kafka did not take a record: {describe(e)}")
