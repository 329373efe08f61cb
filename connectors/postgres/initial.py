"""The initial snapshot: the rows of every selected table, as ``r`` events that meet the stream
without a gap.

It reads every selected table in the snapshot that PostgreSQL exported when it created the slot:
it sees exactly the transactions that committed before the slot's consistent point, and the
stream carries exactly those after it. Its reads carry ``cdc-event-id`` ``{P - 1}:{n}``, P being
the position the stream starts at, so every streamed change sorts after every snapshot read and
sinks' version guard lets the stream win.
"""

from __future__ import annotations

__all__ = ["InitialSnapshot", "truncate_marker"]

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from cdc.acks import AckTracker
from cdc.config import ConnectorConfig
from cdc.errors import KafkaUnavailable, Refused, describe
from cdc.events import Change, Record, SourceInfo, encode
from cdc.kafka import BUFFER_BYTES, AnyPublisher
from cdc.transforms import TableShape
from connectors.postgres.catalog import PostgresCatalog, selected_tables
from connectors.postgres.decoding import TableInfo
from connectors.postgres.owntables import record_progress
from connectors.postgres.progress import Progress
from connectors.postgres.replication import format_lsn
from connectors.postgres.rows import RowReader, copy_rows, estimated_rows, table_columns
from connectors.postgres.session import pinned
from connectors.postgres.stats import SourceStats

log = logging.getLogger(__name__)


class InitialSnapshot:
    """Reads every selected table in one snapshot and publishes each row as an ``r`` event."""

    def __init__(
        self,
        config: ConnectorConfig,
        max_unacked: int,
        selected: Callable[[str, str], bool],
        subject: str,
        stats: SourceStats | None = None,
        shape: Callable[[str, str], TableShape | None] | None = None,
    ) -> None:
        self.stats = stats
        self.shape = shape
        """A table's transforms (:meth:`cdc.transforms.Transforms.lookup`); None: none has any."""
        self.config = config
        self.max_unacked = max_unacked
        self.selected = selected
        self.subject = subject

    def run(  # noqa: PLR0915  (the read loop reads best in one piece)
        self,
        stop: threading.Event,
        exported: str | None,
        position: int,
        source: SourceInfo,
        publisher: AnyPublisher,
        sql_conn: psycopg.Connection[Any],
        supersede: bool = False,
    ) -> int:
        """Publish the snapshot; return when every record is on Kafka (or ``stop`` is set, or
        raise). ``exported``: the slot's exported snapshot, else a new one is taken.
        ``position``: where the stream will start; reads sort just before it. ``supersede``:
        each table's reads follow a truncate marker (:func:`truncate_marker`)."""
        c = self.config
        tracker = AckTracker()
        txn = tracker.begin(position)
        errors: deque[Exception] = deque()
        # One callback for all the snapshot's records (they are one transaction's).
        callback: Any = publisher.callback(tracker.acked, errors.append, txn)
        held: Change | None = None  # one record behind, so the very last can say "last"
        held_shape: TableShape | None = None
        # The held change's records when its table has transforms (made to know that it
        # publishes any: the one that says "last" must be published).
        held_records = _NONE

        def send(records: list[Record]) -> None:
            for record in records:
                tracker.sent(txn)
                publisher.send_with(record, callback)

        n = 0
        with psycopg.connect(
            pinned(c.dsn.conninfo), application_name=f"cdc-{c.name}-snapshot"
        ) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if exported is not None:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
            tables = selected_tables(conn, self.selected, c.partitions)
            log.info(
                "%s: snapshot of %d table(s) as of %s%s",
                self.subject,
                len(tables),
                format_lsn(position),
                " (the slot's exported snapshot)" if exported else "",
            )
            reads = _TableReads(conn, position, int(time.time() * 1000))
            shapes = PostgresCatalog(sql_conn, c.name)
            for ordinal, (schema, table) in enumerate(tables):
                shape = self._shape(schema, table)
                if supersede and "t" not in c.skipped:
                    marker = truncate_marker(schema, table, position, ordinal, reads.started_ms)
                    send(_records(shape, marker, source))
                label = f"{schema}.{table}"
                total = estimated_rows(conn, schema, table)
                progress = self._progress(label, total)
                self._record(sql_conn, label, "running", 0, total)
                last_note = time.monotonic()
                # Debezium's "first" is the first table's first row: none when it is empty
                first = "first" if ordinal == 0 else "first_in_data_collection"
                for change in _marked_first(reads.table(schema, table, n), first):
                    n += 1
                    records = _NONE if shape is None else shape.records(change, source, None, False)
                    if shape is None or records:
                        if held is not None:
                            send(held_records if held_shape is not None else [encode(held, source)])
                        held, held_shape, held_records = change, shape, records
                    if publisher.unacked_bytes >= BUFFER_BYTES:
                        _drain(publisher, tracker, errors, self.max_unacked)
                    if n % 1000 == 0:
                        # This table's rows: n counts every table's.
                        self._advance(progress, reads.count - progress.done, schema, table)
                        if stop.is_set():
                            return n
                        _drain(publisher, tracker, errors, self.max_unacked)
                        if time.monotonic() - last_note > 5:
                            last_note = time.monotonic()
                            self._record(sql_conn, label, "running", progress.done, total)
                if (
                    held is not None
                    and held.snapshot in _LAST_OVERRIDES
                    and held.table == table
                    and held.schema == schema
                ):
                    held, held_records = _marked_last(held, held_shape, source)
                self._table_done(sql_conn, shapes, reads, progress, total, supersede, schema, table)
            conn.rollback()
        if held is not None:
            send(_records(held_shape, dataclasses.replace(held, snapshot="last"), source))
        tracker.commit(txn)
        _await_delivery(stop, publisher, tracker, errors)
        log.info("%s: snapshot of %d row(s) is on Kafka", self.subject, n)
        return n

    def _shape(self, schema: str, table: str) -> TableShape | None:
        return None if self.shape is None else self.shape(schema, table)

    def _progress(self, label: str, total: int | None) -> Progress:
        progress = Progress(self.subject, label, total)
        return progress if self.stats is None else self.stats.snapshot("initial", progress)

    def _advance(self, progress: Progress, rows: int, schema: str, table: str) -> None:
        """``rows`` more of the table read and published (counted for /metrics as they go)."""
        progress.add(rows)
        if self.stats is not None:
            self.stats.by_table[schema, table, "r"] += rows
            self.stats.last_event = time.time()

    def _table_done(
        self,
        sql_conn: psycopg.Connection[Any],
        shapes: PostgresCatalog,
        reads: _TableReads,
        progress: Progress,
        total: int | None,
        supersede: bool,
        schema: str,
        table: str,
    ) -> None:
        if supersede and self.stats is not None:
            self.stats.by_table[schema, table, "t"] += 1  # its truncate marker
        self._advance(progress, reads.count - progress.done, schema, table)
        progress.close()
        self._record(sql_conn, progress.label, "done", reads.count, total)
        if reads.shape is not None:  # what later schema changes are compared with
            shapes.remember_shape(reads.shape[0], progress.label, reads.shape[1])

    def _record(
        self,
        sql_conn: psycopg.Connection[Any],
        table: str,
        state: str,
        rows: int,
        total: int | None,
    ) -> None:
        record_progress(
            sql_conn, self.config.name, "initial", table, state, rows, total, restart=rows == 0
        )


def truncate_marker(
    schema: str, table: str, position: int, ordinal: int, started_ms: int
) -> Change:
    """The truncate that precedes a table's reads when a snapshot supersedes an earlier one.

    Rows that an interrupted snapshot, or the stream before an ``always`` snapshot, published
    may be gone from the table by now, and a keyless table's reads would count its rows again:
    the marker tells consumers to drop everything of the table before it. Its id,
    ``{position - 2}:{ordinal}``, sorts after everything published before the slot (made again
    for this snapshot) got its position, and before the reads (``{position - 1}:{n}``)."""
    return Change(
        op="t",
        schema=schema,
        table=table,
        key=None,
        before=None,
        after=None,
        commit_lsn=position - 2,
        index=ordinal,
        lsn=position,
        xid=0,
        commit_ts_ms=started_ms,
        snapshot="true",
        total_order=ordinal + 1,
        data_collection_order=1,
    )


class _TableReads:
    """A table's rows, read in the snapshot ``conn`` holds, as ``r`` changes."""

    def __init__(self, conn: psycopg.Connection[Any], position: int, started_ms: int) -> None:
        self.conn = conn
        self.position = position
        self.started_ms = started_ms
        self.catalog = PostgresCatalog(conn)
        self.count = 0
        self.shape: tuple[int, dict[str, str]] | None = None
        """The last table's OID and columns (name -> type), as read."""

    def table(self, schema: str, table: str, first_index: int) -> Iterator[Change]:
        self.count = 0
        self.shape = None
        info = self.catalog.table(schema, table)
        columns = table_columns(self.conn, schema, table)
        if info is None or not columns:
            return
        reader = RowReader(columns)
        self.shape = (info.relid, dict(reader.types))
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(col.name) for col in columns),
            sql.Identifier(schema, table),
        )
        for line in copy_rows(self.conn, query):
            row = reader.row(line)
            self.count += 1
            yield Change(
                op="r",
                schema=schema,
                table=table,
                key=_key(info, row),
                before=None,
                after=row,
                commit_lsn=self.position - 1,
                index=first_index + self.count - 1,
                lsn=self.position,
                xid=0,
                commit_ts_ms=self.started_ms,
                types=reader.types,
                whole_row_key=info.whole_row_key,
                snapshot="true",
                total_order=first_index + self.count,
                data_collection_order=self.count,
            )


def _key(info: TableInfo, row: dict[str, Any]) -> dict[str, Any] | None:
    if not info.key:
        return None
    return {k: row.get(k) for k in info.key}


def _drain(
    publisher: AnyPublisher, tracker: AckTracker, errors: deque[Exception], max_unacked: int
) -> None:
    """Backpressure: wait while too many records are unacked."""
    publisher.poll()
    tracker.confirmable()  # counts the acks that arrived
    while tracker.unacked >= max_unacked or publisher.unacked_bytes >= BUFFER_BYTES:
        _raise_on(errors)
        publisher.poll(0.005)
        tracker.confirmable()


def _await_delivery(
    stop: threading.Event, publisher: AnyPublisher, tracker: AckTracker, errors: deque[Exception]
) -> None:
    """Until every record sent is acked (or ``stop``); raise the first delivery error."""
    while not stop.is_set():
        _raise_on(errors)
        if tracker.confirmable() is not None:
            break
        try:
            publisher.flush(1.0)
        except KafkaUnavailable:
            # kafka-python's flush() fails ("Future not done") before the error of a record
            # the broker refused is reported: give that error a moment, it says what failed.
            deadline = time.monotonic() + 1.0
            while not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            _raise_on(errors)
            raise
    _raise_on(errors)


def _raise_on(errors: deque[Exception]) -> None:
    if errors and isinstance(errors[0], Refused):
        raise errors[0]  # ACLs refused: a person must act (the supervisor says so)
    if errors:
        raise KafkaUnavailable(f"Kafka did not take a snapshot record: {describe(errors[0])}")


_NONE: list[Record] = []
"""No records (never added to): a table without transforms makes its record when it is sent."""


_LAST_OVERRIDES = frozenset({"true", "first_in_data_collection"})
"""The markers a table's last row trades for ``last_in_data_collection`` (Debezium's order:
``last``, ``first``, ``last_in_data_collection``, ``first_in_data_collection``, ``true``)."""


def _marked_first(changes: Iterator[Change], marker: str) -> Iterator[Change]:
    """``changes`` with the first marked as Debezium marks a snapshot's first row (``first``)
    or a table's (``first_in_data_collection``); the exact mode writes both as ``true``."""
    for change in changes:
        yield dataclasses.replace(change, snapshot=marker)  # type: ignore[arg-type]
        break
    yield from changes


def _marked_last(
    held: Change, shape: TableShape | None, source: SourceInfo
) -> tuple[Change, list[Record]]:
    """A table's last row, marked ``last_in_data_collection``, and its records."""
    held = dataclasses.replace(held, snapshot="last_in_data_collection")
    return held, _NONE if shape is None else shape.records(held, source, None, False)


def _records(shape: TableShape | None, change: Change, source: SourceInfo) -> list[Record]:
    """What a snapshot publishes for ``change``: its record, or what its table's transforms make
    of it."""
    return [encode(change, source)] if shape is None else shape.records(change, source, None, False)
