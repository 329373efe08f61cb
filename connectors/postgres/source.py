"""The PostgreSQL source: slot -> wal2json -> events -> Kafka, confirming only what Kafka acked.

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
from typing import Any

import psycopg

from cdc.acks import AckTracker, Txn
from cdc.config import ConnectorConfig, KafkaConfig
from cdc.errors import CdcError, KafkaUnavailable, SourceUnavailable, describe
from cdc.events import Record, SourceInfo, encode, tombstone
from cdc.globs import TableSelector
from cdc.kafka import Publisher
from connectors.postgres.catalog import PostgresCatalog, selected_tables
from connectors.postgres.replication import (
    Keepalive,
    ReplicationConnection,
    XLogData,
    format_lsn,
)
from connectors.postgres.wal2json import WAL2JSON_OPTIONS, Begin, Commit, Wal2JsonDecoder

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 10.0
STOP_FLUSH_S = 5.0
BACKOFF_MAX_S = 30.0
PROGRESS_LOG_S = 30.0
_GLOB_CHARS = frozenset("*?[")


class PostgresSource:
    """Streams one database into Kafka; see the module docstring for the guarantees."""

    def __init__(self, config: ConnectorConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka
        self.subject = f"connector {config.name}"
        self.published = 0
        self.confirmed = 0

    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._session(stop)
            except CdcError as e:
                if not e.retriable:
                    raise
                if time.monotonic() - started > 60:
                    delay = 1.0  # it ran a good while: this is a new incident
                log.warning("%s: %s; retrying in %.0f s", self.subject, e, delay)
                stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    def _session(self, stop: threading.Event) -> None:
        c = self.config
        with contextlib.ExitStack() as opened:
            try:
                sql = opened.enter_context(
                    psycopg.connect(
                        c.dsn.conninfo, autocommit=True, application_name=f"cdc-{c.name}"
                    )
                )
                self._ensure_slot(sql)
                selector = TableSelector(c.tables, c.exclude_tables)
                catalog = PostgresCatalog(sql)
                self._warn_about_tables(sql, selector, catalog)
                decoder = Wal2JsonDecoder(catalog, selector)
                source = SourceInfo(c.name, sql.info.dbname, c.topic_prefix)
                publisher = Publisher(self.kafka)
                opened.callback(publisher.close, 1.0)
                repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
                opened.callback(repl.close)
                repl.start(c.slot, 0, {**WAL2JSON_OPTIONS, **wal2json_table_options(c)})
                log.info("%s: streaming slot %s", self.subject, c.slot)
                self._stream(stop, repl, decoder, source, publisher, sql)
            except psycopg.OperationalError as e:
                reason = describe(e, c.dsn.password)
                raise SourceUnavailable(f"{c.dsn}: {reason}") from e
            except psycopg.Error as e:  # not a lost connection: retrying would not help
                raise CdcError(f"{self.subject}: {describe(e, c.dsn.password)}") from e

    def _stream(  # noqa: PLR0912, PLR0915  (the hot loop reads best in one piece)
        self,
        stop: threading.Event,
        repl: ReplicationConnection,
        decoder: Wal2JsonDecoder,
        source: SourceInfo,
        publisher: Publisher,
        sql: psycopg.Connection[Any],
    ) -> None:
        tracker = AckTracker()
        errors: deque[Exception] = deque()
        txn: Txn | None = None
        received = server_end = sent_flush = 0
        heartbeat_s = self.config.heartbeat_interval_s
        status_every = min(STATUS_INTERVAL_S, heartbeat_s) if heartbeat_s else STATUS_INTERVAL_S
        last_status = last_heartbeat = last_progress = time.monotonic()
        published_at_progress = self.published
        tombstones = self.config.tombstones

        max_unacked = self.kafka.producer.max_unacked_records

        def publish(record: Record, txn: Txn) -> None:
            tracker.sent(txn)
            # The callback only queues the ack: counting happens on this thread (cdc.acks).
            publisher.send(record, tracker.acked, errors.append, txn)

        while not stop.is_set():
            reply_now = False
            if tracker.unacked >= max_unacked:
                # Backpressure: let Kafka catch up before reading more, but keep the
                # housekeeping below going so PostgreSQL keeps hearing from us.
                messages: list[XLogData | Keepalive] = []
                time.sleep(0.005)
            else:
                messages = repl.read(timeout_s=0.2)
            for msg in messages:
                if isinstance(msg, Keepalive):
                    server_end = max(server_end, msg.wal_end)
                    reply_now = reply_now or msg.reply_requested
                    continue
                received = max(received, msg.data_start)
                item = decoder.decode(msg.payload)
                if item is None:
                    continue
                if isinstance(item, Begin):
                    txn = tracker.begin(item.end_lsn)
                elif isinstance(item, Commit):
                    if txn is not None:
                        tracker.commit(txn)
                    txn = None
                else:
                    if txn is None:
                        raise CdcError("wal2json sent a change outside a transaction")
                    for change in item if isinstance(item, tuple) else (item,):
                        record = encode(change, source)
                        publish(record, txn)
                        if tombstones and change.op == "d":
                            publish(tombstone(record), txn)
                        self.published += 1

            if errors:
                raise _delivery_failed(errors[0])
            position = tracker.confirmable()
            if position is not None and position > self.confirmed:
                self.confirmed = position
            if heartbeat_s and txn is None and tracker.idle and server_end > self.confirmed:
                # Nothing is in flight and the server has sent everything before server_end:
                # confirming it lets the server recycle WAL that holds nothing for us.
                self.confirmed = server_end

            now = time.monotonic()
            if heartbeat_s and self.config.heartbeat_query and now - last_heartbeat >= heartbeat_s:
                sql.execute(self.config.heartbeat_query)
                last_heartbeat = now
            if (
                reply_now
                or now - last_status >= status_every
                or (self.confirmed > sent_flush and now - last_status >= 1.0)
            ):
                # flushed = confirmed: the server may now forget everything before it.
                repl.send_status(max(received, self.confirmed), self.confirmed, self.confirmed)
                sent_flush, last_status = self.confirmed, now
            if now - last_progress >= PROGRESS_LOG_S:
                rate = (self.published - published_at_progress) / (now - last_progress)
                log.info(
                    "%s: %d events published (%.0f/s), confirmed LSN %s",
                    self.subject,
                    self.published,
                    rate,
                    format_lsn(self.confirmed),
                )
                last_progress, published_at_progress = now, self.published

        self._stop(repl, publisher, tracker, errors, received)

    def _stop(
        self,
        repl: ReplicationConnection,
        publisher: Publisher,
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

    def _ensure_slot(self, sql: psycopg.Connection[Any]) -> None:
        c = self.config
        row = sql.execute(
            "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = %s",
            (c.slot,),
        ).fetchone()
        if row is not None:
            plugin, slot_type, database = row
            if slot_type != "logical" or plugin != c.plugin or database != sql.info.dbname:
                raise CdcError(
                    f"{self.subject}: slot {c.slot} exists but is a {slot_type} slot of plugin"
                    f" {plugin} on database {database}; it needs a logical {c.plugin} slot on"
                    f" {sql.info.dbname}. Choose another slot name, or drop that slot."
                )
            return
        if c.snapshot != "never":
            log.warning(
                "%s: snapshot = %r is not built yet (issue 5); only changes committed after the"
                " slot's creation are published",
                self.subject,
                c.snapshot,
            )
        repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
        try:
            lsn = repl.create_slot(c.slot, c.plugin)
            log.info("%s: created slot %s at %s", self.subject, c.slot, format_lsn(lsn))
        except CdcError as e:
            if "already exists" not in str(e):
                raise
        finally:
            repl.close()

    def _warn_about_tables(
        self, sql: psycopg.Connection[Any], selector: TableSelector, catalog: PostgresCatalog
    ) -> None:
        for schema, table in selected_tables(sql, selector):
            info = catalog.table(schema, table)
            if info is not None and not info.key:
                log.warning(
                    "%s: table %s.%s has no primary key and REPLICA IDENTITY %s: its updates"
                    " and deletes cannot be identified (ALTER TABLE %s.%s REPLICA IDENTITY"
                    " FULL)",
                    self.subject,
                    schema,
                    table,
                    info.identity.upper(),
                    schema,
                    table,
                )


def _delivery_failed(e: Exception) -> CdcError:
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
        elif _GLOB_CHARS.isdisjoint(part):
            parts.append(_escape(part))
        else:
            return None
    return ".".join(parts)


def wal2json_table_options(config: ConnectorConfig) -> dict[str, str]:
    """``add-tables`` / ``filter-tables`` for the globs wal2json can apply itself.

    wal2json understands only whole-part wildcards (``public.*``, ``*.orders``). Where every
    include glob is of that form, wal2json skips unselected tables before they cost anything;
    otherwise the connector filters them after decoding. Either way the result is the same.
    """
    options = {}
    includes = [_pushable(g) for g in config.tables]
    if "*.*" not in includes and all(includes):
        options["add-tables"] = ",".join(i for i in includes if i)
    excludes = [e for e in (_pushable(g) for g in config.exclude_tables) if e]
    if excludes:
        options["filter-tables"] = ",".join(excludes)
    return options
