"""The PostgreSQL source: slot -> wal2json or pgoutput -> events -> Kafka, confirming only what
Kafka acked.

Reading top to bottom: :meth:`PostgresSource.run` keeps a session alive (reconnecting with backoff
after a retriable failure); :meth:`_session` opens the connections and makes sure the slot exists;
:meth:`_stream` is the loop: read a message, decode it, publish its records without waiting,
and, separately, confirm to PostgreSQL the newest position that Kafka has fully acked.

Resume rule: streaming starts at the slot's confirmed flush position, which is only ever moved
to the end of a transaction whose every record Kafka acked (or, when nothing at all is in
flight, to the server's reported end of WAL). A crash anywhere therefore re-publishes at most the
unconfirmed suffix, with the same event ids.
"""

from __future__ import annotations

__all__ = ["PostgresSource", "wal2json_table_options"]

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc.acks import AckTracker, DeliveryWatch, Txn
from cdc.config import ConnectorConfig, KafkaConfig
from cdc.errors import CdcError, KafkaUnavailable, Refused, SourceUnavailable, describe
from cdc.events import Record, SourceInfo, encode, tombstone
from cdc.globs import TableSelector, compile_globs, is_plain
from cdc.kafka import BUFFER_BYTES, AnyPublisher, ConfluentPublisher, open_publisher
from cdc.oversized import Oversized
from cdc.pgerrors import refused
from cdc.retry import Backoff, Stopped, retried
from connectors.postgres.catalog import PostgresCatalog, selected_tables
from connectors.postgres.check import own_tables
from connectors.postgres.decoding import Begin, Commit
from connectors.postgres.incremental import IncrementalSnapshots
from connectors.postgres.initial import InitialSnapshot
from connectors.postgres.owntables import (
    OWN_SCHEMA,
    SIGNAL_TABLE,
    ensure_source_tables,
    initial_state,
    mark_initial,
    request_snapshot,
)
from connectors.postgres.partitions import PartitionWatch
from connectors.postgres.pgoutput import PgOutputDecoder, has_c_tuples, pgoutput_options
from connectors.postgres.publication import Publication
from connectors.postgres.replication import (
    XLOGDATA,
    XLOGDATA_PAYLOAD,
    Keepalive,
    ReplicationConnection,
    SlotExists,
    format_lsn,
    parse_lsn,
    parse_message,
    xlog_start,
)
from connectors.postgres.versions import FAILOVER_SLOTS_SINCE, failover_problem, too_old
from connectors.postgres.wal2json import WAL2JSON_OPTIONS, Wal2JsonDecoder

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 10.0
CONFIRM_BUSY_S = 1.0
CONFIRM_IDLE_S = 0.1
"""How often a newly confirmed position is sent to PostgreSQL: at most once a second while
records are in flight, and within 0.1 s once everything read is on Kafka, so that the slot shows
a burst delivered (and lets its WAL go) when it is, not up to a second later."""
STOP_FLUSH_S = 5.0
SLOT_RELEASE_S = 30.0
"""How long a slot to be dropped for a new snapshot may stay held: the server process of a
connector that was killed lets it go once it sees its client gone."""
BACKOFF_MAX_S = 30.0
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


@dataclass
class CreatedSlot:
    """The slot, and while it lasts, the connection that created it and its exported snapshot."""

    repl: ReplicationConnection | None
    lsn: int
    """Where streaming starts: the consistent point of a new slot, else its confirmed flush."""
    snapshot: str | None
    created: bool

    def close(self) -> None:
        if self.repl is not None:
            self.repl.close()
            self.repl = None
            self.snapshot = None


class PostgresSource:
    """Streams one database into Kafka; see the module docstring for the guarantees."""

    def __init__(self, config: ConnectorConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka
        self.subject = f"connector {config.name}"
        self.published = 0
        self.acked = 0
        """Records Kafka acked while streaming (tombstones and incremental snapshot reads
        included; the initial snapshot's are not counted)."""
        self.oversized = Oversized(config.oversized, self.subject)
        """Records over Kafka's limits left out or truncated (``oversized``), across sessions."""
        self.confirmed = 0
        self._delivery = DeliveryWatch(self.subject)
        self.finished = False
        """Set once an ``initial_only`` connector has delivered its snapshot."""
        self._always_done = False
        self._partitions_table = False
        self._started: threading.Event | None = None
        self._pushed_schemas: frozenset[str] | None = None
        """With partitions = "root", the schemas wal2json was told to decode (``add-tables``):
        a partition created elsewhere is skipped by wal2json until the session starts again."""
        """``cdc.partitions`` exists (else the partition trees are remembered in memory)."""

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        """Keep a session up until ``stop``, reconnecting after retriable failures; set
        ``started`` once snapshotting or streaming (see :class:`cdc.plugins.Connector`)."""
        self._started = started
        with contextlib.suppress(Stopped):
            retried(
                lambda: self._session(stop),
                stop=stop,
                retry_on=CdcError,
                when=lambda e: isinstance(e, CdcError) and e.retriable,
                log=log,
                what=self.subject,
                backoff=Backoff(max_s=BACKOFF_MAX_S),
            )

    def _session(self, stop: threading.Event) -> None:
        c = self.config
        with contextlib.ExitStack() as opened:
            try:
                sql = opened.enter_context(
                    psycopg.connect(
                        c.dsn.conninfo, autocommit=True, application_name=f"cdc-{c.name}"
                    )
                )
                self._check_server(sql.info.server_version)
                own_tables = self._own_tables(sql)
                selector = TableSelector(c.tables, c.exclude_tables)
                publication: Publication | None = None
                added: list[tuple[str, str]] = []
                if c.plugin == "pgoutput":
                    publication = Publication(c, self.subject, sql, selector)
                    publication.ensure()
                    added = publication.sync()
                # Read before the slot is looked at, which may mark a new initial snapshot owed.
                before = self._initial_state(sql) if own_tables else None
                created = self._ensure_slot(sql, export=c.snapshot != "never")
                opened.callback(created.close)
                catalog = PostgresCatalog(sql, c.name if own_tables else None)
                self._warn_about_tables(sql, selector, catalog)
                watch = PartitionWatch(
                    c, self.subject, sql, selector, own_tables, self._partitions_table
                )
                if created.created:
                    # The trees as the slot's snapshot sees them, give or take the moment since:
                    # a partition attached or detached during the initial snapshot is repaired.
                    watch.forget()
                    watch.look()
                decoder, options = self._decoder(catalog, selector, watch)
                source = SourceInfo(c.name, sql.info.dbname, c.topic_prefix)
                publisher = open_publisher(self.kafka, self.oversized)
                opened.callback(publisher.close, 1.0)
                if self._initial_snapshot_owed(sql):
                    self._mark_started()  # a snapshot may take hours: it runs
                    created = self._snapshot_first(
                        stop, sql, created, selector, source, publisher, watch, before, opened
                    )
                    if stop.is_set():
                        return
                created.close()  # the exported snapshot is no longer needed
                if c.snapshot == "initial_only":
                    log.info("%s: snapshot = 'initial_only': done, not streaming", self.subject)
                    self.finished = True
                    return
                watch.look()
                added = [t for t in added if t not in watch.snapshotted]
                if added and not created.created:
                    self._snapshot_added(sql, catalog, added, own_tables)
                repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
                opened.callback(repl.close)
                repl.start(c.slot, 0, options)
                self._mark_started()
                log.info("%s: streaming slot %s", self.subject, c.slot)
                snapshots = IncrementalSnapshots(c, self.subject, sql, catalog, own_tables)
                tables = _Tables(self, sql, catalog, publication, watch, decoder, own_tables)
                self._stream(stop, repl, decoder, source, publisher, sql, snapshots, tables)
            except psycopg.Error as e:
                raise self._failure(e) from e

    def _failure(self, e: psycopg.Error) -> CdcError:
        """A refusal names its fix; a lost connection may pass; anything else would not."""
        c = self.config
        reason = describe(e, c.dsn.password)
        permanent = refused(e, self.subject, c.dsn)
        if permanent is not None:
            return permanent
        if isinstance(e, psycopg.OperationalError):
            return SourceUnavailable(f"{c.dsn}: {reason}")
        return CdcError(f"{self.subject}: {reason}")

    def _mark_started(self) -> None:
        if self._started is not None:
            self._started.set()

    def _decoder(
        self, catalog: PostgresCatalog, selector: TableSelector, watch: PartitionWatch
    ) -> tuple[Wal2JsonDecoder | PgOutputDecoder, dict[str, str]]:
        """The plugin's decoder and its ``START_REPLICATION`` options."""
        c = self.config
        # A partition's changes are published under its partitioned table's name.
        root = catalog.partition_root if c.partitions == "root" else None
        if c.plugin == "pgoutput":
            if not has_c_tuples():
                log.warning(
                    "%s: pgoutput's values are decoded in Python, at about half the"
                    " speed: cdc was installed without its C extension (no C compiler)",
                    self.subject,
                )
            decoder = PgOutputDecoder(catalog, self._capture(selector), root)
            return decoder, pgoutput_options(c.publication)
        pushed = wal2json_table_options(c, watch.partition_schemas())
        self._pushed_schemas = None
        if "add-tables" in pushed and root is not None:
            self._pushed_schemas = frozenset(
                i[:-2] for i in pushed["add-tables"].split(",") if i.endswith(".*")
            )
        return Wal2JsonDecoder(catalog, self._capture(selector), root), {
            **WAL2JSON_OPTIONS,
            **pushed,
        }

    def _stream(  # noqa: PLR0912, PLR0915  (the hot loop reads best in one piece)
        self,
        stop: threading.Event,
        repl: ReplicationConnection,
        decoder: Wal2JsonDecoder | PgOutputDecoder,
        source: SourceInfo,
        publisher: AnyPublisher,
        sql: psycopg.Connection[Any],
        snapshots: IncrementalSnapshots,
        tables: _Tables | None = None,
    ) -> None:
        tracker = AckTracker()
        errors: deque[Exception] = deque()
        txn: Txn | None = None
        received = server_end = sent_flush = 0
        heartbeat_s = self.config.heartbeat_interval_s
        status_every = min(STATUS_INTERVAL_S, heartbeat_s) if heartbeat_s else STATUS_INTERVAL_S
        last_status = last_heartbeat = last_progress = time.monotonic()
        published_at_progress = self.published
        acked_before = self.acked
        self._delivery.session(tracker, last_progress)
        watch = self._delivery.tick

        def waiting() -> None:
            # librdkafka's queue is full and send_with waits for room: the loop below is not
            # turning, so the outage would go unsaid (and unknown to cdc status) without this.
            tracker.count()
            watch(tracker, time.monotonic())

        if isinstance(publisher, ConfluentPublisher):
            publisher.on_wait = waiting
        tombstones = self.config.tombstones

        max_unacked = self.kafka.producer.max_unacked_records

        sent, acked, failed = tracker.sent, tracker.acked, errors.append
        make_callback, send_with = publisher.callback, publisher.send_with

        def publish(record: Record, txn: Txn) -> None:
            sent(txn)
            # The callback only queues the ack: counting happens on this thread (cdc.acks).
            callback = txn.callback
            if callback is None:
                callback = txn.callback = make_callback(acked, failed, txn)
            send_with(record, callback)

        while not stop.is_set():
            reply_now = False
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
            for buf in messages:
                if buf[0] != XLOGDATA:
                    msg = parse_message(buf)
                    if isinstance(msg, Keepalive):
                        server_end = max(server_end, msg.wal_end)
                        reply_now = reply_now or msg.reply_requested
                    continue
                start = xlog_start(buf)
                received = max(received, start)
                item = decoder.decode(buf[XLOGDATA_PAYLOAD:], start)
                if item is None:
                    continue
                if isinstance(item, Begin):
                    txn = tracker.begin(item.end_lsn)
                elif isinstance(item, Commit):
                    if txn is not None:
                        txn.end = item.end_lsn  # pgoutput says it only now
                        tracker.commit(txn)
                    txn = None
                    if decoder.truncated and tables is not None:
                        tables.truncated(decoder.truncated)
                else:
                    if txn is None:
                        raise CdcError(f"{self.config.plugin} sent a change outside a transaction")
                    for change in item if isinstance(item, tuple) else (item,):
                        if change.table == SIGNAL_TABLE[1] and change.schema == SIGNAL_TABLE[0]:
                            for read in snapshots.on_signal(change, txn.end):
                                publish(encode(read, source), txn)
                                self.published += 1
                            continue
                        snapshots.observe(change)
                        record = encode(change, source, now_ms)
                        publish(record, txn)
                        if tombstones and change.op == "d":
                            publish(tombstone(record), txn)
                        self.published += 1

            if decoder.rereads:
                for schema, table, why in decoder.rereads:
                    snapshots.reread(schema, table, why)
                decoder.rereads.clear()
            publisher.poll()
            if errors:
                raise _delivery_failed(errors[0])
            position = tracker.confirmable()
            if position is not None and position > self.confirmed:
                self.confirmed = position
            self.acked = acked_before + tracker.acked_records
            now = time.monotonic()
            watch(tracker, now)
            if heartbeat_s and txn is None and tracker.idle and server_end > self.confirmed:
                # Nothing is in flight and the server has sent everything before server_end:
                # confirming it lets the server recycle WAL that holds nothing for us.
                self.confirmed = server_end

            snapshots.tick(self.confirmed)
            if tables is not None and now - tables.looked >= TABLES_LOOK_S:
                tables.look(now)
            if heartbeat_s and self.config.heartbeat_query and now - last_heartbeat >= heartbeat_s:
                sql.execute(self.config.heartbeat_query)
                last_heartbeat = now
            if (
                reply_now
                or now - last_status >= status_every
                or (
                    self.confirmed > sent_flush
                    and now - last_status >= (CONFIRM_IDLE_S if tracker.idle else CONFIRM_BUSY_S)
                )
            ):
                # flushed = confirmed: the server may now forget everything before it.
                repl.send_status(max(received, self.confirmed), self.confirmed, self.confirmed)
                sent_flush, last_status = self.confirmed, now
            if now - last_progress >= PROGRESS_LOG_S:
                rate = (self.published - published_at_progress) / (now - last_progress)
                log.info(
                    "%s: %d events published (%.0f/s); Kafka acked %d records (tombstones"
                    " included), %d waiting; confirmed LSN %s",
                    self.subject,
                    self.published,
                    rate,
                    self.acked,
                    tracker.unacked,
                    format_lsn(self.confirmed),
                )
                last_progress, published_at_progress = now, self.published

        self._stop(repl, publisher, tracker, errors, received)

    def _stop(
        self,
        repl: ReplicationConnection,
        publisher: AnyPublisher,
        tracker: AckTracker,
        errors: deque[Exception],
        received: int,
    ) -> None:
        # Stop reading; give in-flight records a few seconds, then confirm only what was acked.
        try:
            publisher.flush(STOP_FLUSH_S)
        except CdcError as e:
            log.warning("%s: stopping with records undelivered (%s)", self.subject, e)
        position = tracker.confirmable()
        if position is not None and position > self.confirmed:
            self.confirmed = position
        repl.send_status(max(received, self.confirmed), self.confirmed, self.confirmed)
        log.info("%s: stopped at confirmed LSN %s", self.subject, format_lsn(self.confirmed))

    def _check_server(self, version: int) -> None:
        """Refuse, once and for all (not retriable), a server this connector cannot run on."""
        problem = too_old(version)
        if problem is None and self.config.failover_slot:
            problem = failover_problem(version)
        if problem is not None:
            raise CdcError(f"{self.subject}: {problem}")

    def _own_tables(self, sql: psycopg.Connection[Any]) -> bool:
        """Create ``cdc.signal`` and ``cdc.snapshots`` when missing. Without the privilege,
        a connector that never snapshots runs on without incremental snapshots."""
        try:
            self._partitions_table = ensure_source_tables(sql)
        except psycopg.errors.InsufficientPrivilege as e:
            # What cdc check says of it names the grant: on the database, or on schema cdc.
            role = str(sql.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
            found = own_tables(sql, self.subject, self.config, role)
            cause = (
                f"{self.subject}: cannot create the connector's tables cdc.signal and"
                f" cdc.snapshots ({describe(e, self.config.dsn.password)})"
            )
            problem = f"{cause}: {found.message}"
            if self.config.snapshot != "never":
                raise Refused(cause, found.message) from e
            log.warning("%s; incremental snapshots are unavailable", problem)
            return False
        return True

    def _snapshot_added(
        self,
        sql: psycopg.Connection[Any],
        catalog: PostgresCatalog,
        added: list[tuple[str, str]],
        snapshots: bool,
    ) -> None:
        """pgoutput decodes a table's changes only from the moment it joined the publication:
        rows written before are read by an incremental snapshot (keyed tables only)."""
        keyed = []
        for schema, table in added:
            if (schema, table) == SIGNAL_TABLE:
                continue
            info = catalog.table(schema, table, refresh=True)
            if snapshots and info is not None and info.has_primary_key:
                keyed.append(f"{schema}.{table}")
            else:
                log.warning(
                    "%s: %s.%s joined the publication only now; rows written to it before are"
                    " not captured (%s)",
                    self.subject,
                    schema,
                    table,
                    "no primary key for an incremental snapshot"
                    if snapshots
                    else "incremental snapshots are unavailable",
                )
        if keyed:
            request_snapshot(sql, self.config.name, keyed)
            log.info(
                "%s: incremental snapshot of %s requested: it joined the publication only now",
                self.subject,
                ", ".join(keyed),
            )

    def _ensure_slot(self, sql: psycopg.Connection[Any], export: bool) -> CreatedSlot:
        """Make sure the slot exists. When this creates it, the result holds the replication
        connection that created it open, with its exported snapshot, until closed."""
        c = self.config
        # pg_replication_slots has the failover column from PostgreSQL 17 on.
        failover = "failover" if sql.info.server_version >= FAILOVER_SLOTS_SINCE else "false"
        row = sql.execute(
            psycopg.sql.SQL(
                "SELECT plugin, slot_type, database, confirmed_flush_lsn::text, {}"
                " FROM pg_replication_slots WHERE slot_name = %s"
            ).format(psycopg.sql.SQL(failover)),
            (c.slot,),
        ).fetchone()
        if row is not None:
            plugin, slot_type, database, confirmed, is_failover = row
            if slot_type != "logical" or plugin != c.plugin or database != sql.info.dbname:
                raise CdcError(
                    f"{self.subject}: slot {c.slot} exists but is a {slot_type} slot of plugin"
                    f" {plugin} on database {database}; it needs a logical {c.plugin} slot on"
                    f" {sql.info.dbname}. Choose another slot name, or drop that slot."
                )
            if c.failover_slot and not is_failover:
                self._make_failover(c.slot)
            return CreatedSlot(None, parse_lsn(confirmed or "0/0"), None, created=False)
        if c.snapshot in ("initial", "initial_only"):
            # Remembered before the slot exists: a crash between the two must not leave a slot
            # whose snapshot nobody knows is owed.
            self._mark_initial(sql, "pending")
        repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
        try:
            lsn, snapshot = repl.create_slot(
                c.slot, c.plugin, export=export, failover=c.failover_slot
            )
        except SlotExists:
            # Another process made it between our look and our create: use it as it is.
            repl.close()
            return self._ensure_slot(sql, export=False)
        except BaseException:
            repl.close()
            raise
        log.info(
            "%s: created %sslot %s at %s",
            self.subject,
            "failover " if c.failover_slot else "",
            c.slot,
            format_lsn(lsn),
        )
        return CreatedSlot(repl, lsn, snapshot, created=True)

    def _snapshot_first(
        self,
        stop: threading.Event,
        sql: psycopg.Connection[Any],
        created: CreatedSlot,
        selector: TableSelector,
        source: SourceInfo,
        publisher: AnyPublisher,
        watch: PartitionWatch,
        before: str | None,
        opened: contextlib.ExitStack,
    ) -> CreatedSlot:
        """The initial snapshot, in the exported snapshot of a slot made for it (made again
        when the slot has none); ``before``: its state in ``cdc.snapshots`` before this start."""
        if created.snapshot is None:
            created = self._new_slot_for_snapshot(sql)
            opened.callback(created.close)
            watch.forget()  # as for a new slot: the trees its snapshot sees
            watch.look()
        supersede = before in ("running", "done")
        self._initial_snapshot(stop, sql, created, selector, source, publisher, supersede)
        return created

    def _new_slot_for_snapshot(self, sql: psycopg.Connection[Any]) -> CreatedSlot:
        """Drop the slot and create it again, for its exported snapshot.

        A snapshot is exact only at the position the stream starts from, and only a slot's
        creation exports a snapshot at a known position. The old slot is held by no change that
        matters: streaming never started (an interrupted initial snapshot), or a snapshot of
        everything is wanted anyway (``always``); what it held is in the new snapshot, and the
        snapshot's truncate markers retract what an earlier attempt published."""
        slot = self.config.slot
        deadline = time.monotonic() + SLOT_RELEASE_S
        while True:
            row = sql.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                break
            if row[0] is None:
                try:
                    sql.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    pass  # taken again meanwhile: look again
            elif time.monotonic() > deadline:
                raise SourceUnavailable(
                    f"{self.subject}: slot {slot} is in use by server process {row[0]}, so the"
                    " snapshot cannot start again; is another cdc running this connector?"
                )
            time.sleep(0.1)
        log.info("%s: dropped slot %s for a snapshot at a known position", self.subject, slot)
        created = self._ensure_slot(sql, export=True)
        if created.snapshot is None:  # another process made the slot between drop and create
            created.close()
            raise SourceUnavailable(f"{self.subject}: slot {slot} was made again by another client")
        return created

    def _initial_state(self, sql: psycopg.Connection[Any]) -> str | None:
        return initial_state(sql, self.config.name)

    def _make_failover(self, slot: str) -> None:
        """failover_slot = true on a slot made without it: turn it on, as configured."""
        repl = ReplicationConnection(self.config.dsn.conninfo, self.config.dsn.password)
        try:
            repl.alter_slot_failover(slot)
        finally:
            repl.close()
        log.info("%s: slot %s is now a failover slot", self.subject, slot)

    def _mark_initial(self, sql: psycopg.Connection[Any], state: str) -> None:
        mark_initial(sql, self.config.name, state)

    def _initial_snapshot_owed(self, sql: psycopg.Connection[Any]) -> bool:
        mode = self.config.snapshot
        if mode == "never":
            return False
        if mode == "always":
            return not self._always_done
        state = self._initial_state(sql)
        return state is not None and state != "done"

    def _initial_snapshot(
        self,
        stop: threading.Event,
        sql: psycopg.Connection[Any],
        slot: CreatedSlot,
        selector: TableSelector,
        source: SourceInfo,
        publisher: AnyPublisher,
        supersede: bool,
    ) -> None:
        """``supersede``: an earlier snapshot (interrupted, or ``always``'s last) may have
        published rows that this one does not show: each table's reads are preceded by a
        truncate marker below them, so consumers drop what came before."""
        c = self.config
        self._mark_initial(sql, "running")
        if supersede:
            log.info(
                "%s: taking a new snapshot; each table's rows are preceded by a truncate"
                " marker that retracts what earlier snapshots and streams published",
                self.subject,
            )
        reader = InitialSnapshot(
            c,
            self.kafka.producer.max_unacked_records,
            lambda s, t: s != OWN_SCHEMA and selector(s, t),
            self.subject,
        )
        rows = reader.run(stop, slot.snapshot, slot.lsn, source, publisher, sql, supersede)
        if stop.is_set():
            return
        self._mark_initial(sql, "done")
        self._always_done = True
        self.published += rows

    @staticmethod
    def _capture(selector: TableSelector) -> Callable[[str, str], bool]:
        """What the decoder decodes: the selected tables, never the ``cdc`` schema, and the
        signal table, whose rows are watermarks and requests, not published."""

        def capture(schema: str, table: str) -> bool:
            if schema == OWN_SCHEMA:
                return (schema, table) == SIGNAL_TABLE
            return selector(schema, table)

        return capture

    def _warn_about_tables(
        self, sql: psycopg.Connection[Any], selector: TableSelector, catalog: PostgresCatalog
    ) -> None:
        for schema, table in selected_tables(sql, selector):
            info = catalog.table(schema, table)
            if info is not None and not info.key:
                # In a publication, PostgreSQL refuses such a table's updates and deletes.
                refused = (
                    "; PostgreSQL refuses them while the table is in a publication"
                    if self.config.plugin == "pgoutput"
                    else ""
                )
                log.warning(
                    "%s: table %s.%s has no primary key and REPLICA IDENTITY %s: its updates"
                    " and deletes cannot be identified%s (ALTER TABLE %s.%s REPLICA IDENTITY"
                    " FULL)",
                    self.subject,
                    schema,
                    table,
                    info.identity.upper(),
                    refused,
                    schema,
                    table,
                )


class _Tables:
    """What the stream loop does when the database's tables change under it."""

    def __init__(
        self,
        source: PostgresSource,
        sql: psycopg.Connection[Any],
        catalog: PostgresCatalog,
        publication: Publication | None,
        watch: PartitionWatch,
        decoder: Wal2JsonDecoder | PgOutputDecoder,
        snapshots: bool,
    ) -> None:
        self.source = source
        self.sql = sql
        self.catalog = catalog
        self.publication = publication
        self.watch = watch
        self.decoder = decoder
        self.snapshots = snapshots
        self.looked = time.monotonic()

    def look(self, now: float) -> None:
        self.looked = now
        if self.watch.look():
            self.decoder.forget_routes()
            self._follow_partitions()
        if self.publication is not None:
            # Before the stream reads on: a snapshot the watch asked for reads its table only
            # once the stream brings the request, when the table is in the publication.
            added = self.publication.sync()
            added = [t for t in added if t not in self.watch.snapshotted]
            if added:
                self.source._snapshot_added(self.sql, self.catalog, added, self.snapshots)

    def _follow_partitions(self) -> None:
        """wal2json skips a partition outside the schemas it was told to decode: its rows since
        it was made are read again by a snapshot, asked for before the session starts again
        with options that decode it."""
        pushed = self.source._pushed_schemas
        if pushed is None:
            return
        outside = {
            root: {f"{s}.{t}" for s, t in tree.values() if s not in pushed}
            for root, tree in self.watch.last_trees.items()
        }
        outside = {root: names for root, names in outside.items() if names}
        if not outside:
            return
        for root, names in outside.items():
            self.watch.resync(
                root,
                f"partition(s) {', '.join(sorted(names))} outside the schemas wal2json decodes"
                f" ({', '.join(sorted(pushed))})",
            )
        raise SourceUnavailable(
            "partitions outside the schemas wal2json decodes:"
            " starting the stream again to decode them"
        )

    def truncated(self, truncated: dict[tuple[str, str], set[tuple[str, str]]]) -> None:
        """A transaction truncated some partitions of a partitioned table, not all: its target
        was emptied (the truncate event), so the rows of the other partitions are read again."""
        for root, names in truncated.items():
            if root in names:
                continue  # the partitioned table itself: all of it
            if self.watch.is_whole(root, names):
                continue
            self.watch.resync(root, "some of its partitions were truncated")
        truncated.clear()


def _delivery_failed(e: Exception) -> CdcError:
    if isinstance(e, Refused):
        return e  # ACLs refused: a person must act (the supervisor says so)
    # Retriable: the session restarts from the slot's confirmed position and publishes again.
    return KafkaUnavailable(f"Kafka did not take a record: {describe(e)}")


def _escape(part: str) -> str:
    return "".join("\\" + ch if ch in " ',.*\\" else ch for ch in part)


def _pushable(glob: str) -> str | None:
    schema, _, table = glob.partition(".")
    parts = []
    for part in (schema, table):
        if part == "*":
            parts.append("*")
        elif is_plain(part):
            parts.append(_escape(part))
        else:
            return None
    return ".".join(parts)


def wal2json_table_options(
    config: ConnectorConfig, partition_schemas: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``add-tables`` / ``filter-tables`` for the globs wal2json can apply itself.

    wal2json understands only whole-part wildcards (``public.*``, ``*.orders``). Where every
    include glob is of that form, wal2json skips unselected tables before they cost anything;
    otherwise the connector filters them after decoding. Either way the result is the same.

    wal2json names a partition's changes by the partition, whose name the globs need not
    match when it is published under its partitioned table's name (``partitions = "root"``):
    then only whole schemas are pushed (``SCHEMA.*``), when they hold every partition of the
    captured partitioned tables (``partition_schemas``), and no exclusion is.
    """
    options = {}
    root = config.partitions == "root"
    includes = [_pushable(g) for g in config.tables]
    if root and not all(i and i.endswith(".*") and not i.startswith("*.") for i in includes):
        includes = [None]
    if root and not partition_schemas <= {i[:-2] for i in includes if i}:
        includes = [None]
    if "*.*" not in includes and all(includes):
        # The signal table carries snapshot watermarks and requests: always decoded.
        signal = ".".join(SIGNAL_TABLE)
        options["add-tables"] = ",".join([*(i for i in includes if i), signal])
    # An exclusion that would hide the signal table from wal2json is left to the connector,
    # which never publishes the cdc schema anyway.
    excludes = [
        e
        for g in config.exclude_tables
        if (e := _pushable(g)) and not compile_globs([g]).match(".".join(SIGNAL_TABLE))
    ]
    if excludes and not root:
        options["filter-tables"] = ",".join(excludes)
    return options
