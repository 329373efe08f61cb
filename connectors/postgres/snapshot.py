"""Snapshots: the rows tables hold, as ``r`` events that meet the stream without a gap.

Two kinds. The **initial** snapshot reads every selected table in the snapshot that PostgreSQL
exported when it created the slot: it sees exactly the transactions that committed before the
slot's consistent point, and the stream carries exactly those after it. **Incremental** snapshots
(DBLog, as Debezium does them) read a table in primary-key chunks while streaming goes on; each
chunk is read between two watermarks written to the signal table, and a chunk row that the stream
changed between the watermarks is dropped, since the stream already carries a newer version of it
(see :class:`IncrementalSnapshots`).

Rows are read with ``COPY ... TO STDOUT`` in text format, so each value is its type's output
function's text, as wal2json prints it; :class:`RowReader` then gives it wal2json's JSON shape
(integers and floats as numbers, numeric as an exact string, booleans, bytea as bare hex), so a
snapshot row and a streamed row of the same content are the same event body.

Positions: initial-snapshot reads carry ``cdc-event-id`` ``{P - 1}:{n}``, P being the position
the stream starts at, so every streamed change sorts after every snapshot read and sinks' version
guard lets the stream win. An incremental chunk's rows carry ``{H}:{n}``, H being the commit
LSN of the chunk's closing watermark: after everything the stream delivered before it, before
everything after it.

The connector owns two tables in the source database (schema ``cdc``, created when missing):
``cdc.signal``, through which watermarks and snapshot requests travel in the WAL, and
``cdc.snapshots``, which remembers progress so that a restarted connector redoes an interrupted
initial snapshot and resumes an incremental one after its last finished chunk.
"""

from __future__ import annotations

__all__ = [
    "OWN_SCHEMA",
    "SIGNAL_TABLE",
    "Column",
    "InitialSnapshot",
    "RowReader",
    "ensure_source_tables",
    "table_columns",
]

import dataclasses
import logging
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql
from tqdm import tqdm

from cdc.acks import AckTracker
from cdc.config import ConnectorConfig
from cdc.errors import KafkaUnavailable, Refused, describe
from cdc.events import Change, SourceInfo, encode
from cdc.kafka import BUFFER_BYTES, AnyPublisher
from cdc.sqltext import with_params
from connectors.postgres.catalog import PostgresCatalog, key_text, selected_tables, split_name
from connectors.postgres.decoding import JSON_KINDS, NOT_NUMBERS, TableInfo
from connectors.postgres.replication import format_lsn

log = logging.getLogger(__name__)

SIGNAL_TABLE = ("cdc", "signal")
PROGRESS_TABLE = ("cdc", "snapshots")
OWN_SCHEMA = "cdc"
"""The schema of the connector's own tables (and of sinks' bookkeeping): never captured."""

SOURCE_DDL = """
CREATE SCHEMA IF NOT EXISTS cdc;
CREATE TABLE IF NOT EXISTS cdc.signal (
    id bigserial PRIMARY KEY,
    connector text NOT NULL,
    type text NOT NULL,
    data jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cdc.snapshots (
    connector text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('initial', 'incremental')),
    table_name text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'running', 'done')),
    last_key jsonb,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_total bigint,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, kind, table_name)
);
"""
SHAPES_DDL = """
CREATE TABLE IF NOT EXISTS cdc.shapes (
    connector text NOT NULL,
    relid oid NOT NULL,
    table_name text NOT NULL,
    columns jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, relid)
);
"""
PARTITIONS_DDL = """
CREATE TABLE IF NOT EXISTS cdc.partitions (
    connector text NOT NULL,
    table_name text NOT NULL,
    partitions oid[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, table_name)
);
"""


def ensure_source_tables(conn: psycopg.Connection[Any]) -> bool:
    """Create the connector's tables when missing: ``cdc.signal``, ``cdc.snapshots``, and the
    later ``cdc.shapes`` and ``cdc.partitions``. Where the first two exist and the role may not
    create the others, the connector goes on without them (it then notices fewer schema
    changes while it is down, and keeps partition trees in memory only); return whether
    ``cdc.partitions`` exists."""
    row = conn.execute(
        "SELECT to_regclass('cdc.signal') IS NOT NULL AND to_regclass('cdc.snapshots') IS NOT NULL,"
        " to_regclass('cdc.shapes') IS NOT NULL, to_regclass('cdc.partitions') IS NOT NULL"
    ).fetchone()
    base, shapes, partitions = (bool(v) for v in row) if row else (False, False, False)
    if base and shapes and partitions:
        return True
    conn.execute("SELECT pg_advisory_lock(hashtext('cdc-source-ddl'))")
    try:
        if not base:
            conn.execute(SOURCE_DDL)
        made = []
        for ddl in (SHAPES_DDL, PARTITIONS_DDL):
            try:
                with conn.transaction():
                    conn.execute(ddl)
                made.append(True)
            except psycopg.errors.InsufficientPrivilege as e:
                if not base:
                    raise
                log.warning(
                    "cannot create a table of the connector's (%s): going on without it",
                    describe(e),
                )
                made.append(False)
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext('cdc-source-ddl'))")
    return made[1]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    oid: int
    type_name: str
    """As wal2json prints it: ``format_type`` with the modifier (``numeric(12,2)``)."""


def table_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[Column]:
    """The columns a read carries: generated ones are left out, as the stream leaves them."""
    rows = conn.execute(
        "SELECT a.attname::text, a.atttypid::int, format_type(a.atttypid, a.atttypmod)"
        " FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0"
        " AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()
    return [Column(str(n), int(o), str(t)) for n, o, t in rows]


_ESCAPED = re.compile(rb"\\(.)")
_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape(match: re.Match[bytes]) -> bytes:
    char = match.group(1)
    return _ESCAPES.get(char, char)


class RowReader:
    """Turns a ``COPY ... TO STDOUT`` text row into a row as wal2json would print it."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.names = [c.name for c in columns]
        # Numeric, like every other type, stays text: exact, as the decoder keeps it.
        self.kinds = [JSON_KINDS.get(c.oid, "s") for c in columns]
        self.types = tuple((c.name, c.type_name) for c in columns)

    def row(self, line: bytes) -> dict[str, Any]:
        fields = line.rstrip(b"\n").split(b"\t")
        if len(fields) != len(self.names):
            raise ValueError(f"COPY row has {len(fields)} fields, expected {len(self.names)}")
        out: dict[str, Any] = {}
        for name, kind, raw in zip(self.names, self.kinds, fields, strict=True):
            if raw == b"\\N":
                out[name] = None
                continue
            value = _ESCAPED.sub(_unescape, raw) if b"\\" in raw else raw
            if kind == "s":
                out[name] = value.decode()
            elif kind == "i":
                out[name] = int(value)
            elif kind == "f":
                text = value.decode()
                out[name] = text if text in NOT_NUMBERS else float(text)
            elif kind == "b":
                out[name] = value == b"t"
            else:
                out[name] = value[2:].decode()  # "\x00ff": wal2json prints the hex digits only
        return out


def copy_rows(
    conn: psycopg.Connection[Any], query: sql.Composable, params: Sequence[Any] = ()
) -> Iterator[bytes]:
    """The rows of ``COPY (query) TO STDOUT``, one text line each, as they arrive."""
    statement = sql.SQL("COPY ({}) TO STDOUT").format(query)
    if not params:  # sent as it is: no placeholder parsing
        copying = conn.cursor().copy(statement)
    else:
        copying = conn.cursor().copy(with_params(statement, conn), params)
    with copying as copy:
        for data in copy:
            yield bytes(data)


class Progress:
    """Rows done of a table: a bar on a terminal, a log line every so often otherwise."""

    LOG_EVERY_S = 10.0

    def __init__(self, subject: str, label: str, total: int | None, done: int = 0) -> None:
        self.subject, self.label, self.total = subject, label, total
        self.done = self.base = done
        """Rows done in all, and before this process started on the table."""
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=done, desc=f"{subject}: {label}", unit=" rows", leave=True
            )

    def add(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_log >= self.LOG_EVERY_S:
            self.last_log = now
            log.info("%s: snapshot %s", self.subject, self.describe(now))

    def describe(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = (self.done - self.base) / elapsed
        text = f"{self.label}: {self.done} rows, {rate:.0f} rows/s"
        if self.total:
            left = max(self.total - self.done, 0)
            pct = min(100.0, 100.0 * self.done / self.total)
            eta = f", ETA {left / rate:.0f} s" if rate > 0 else ""
            text = (
                f"{self.label}: {self.done}/~{self.total} rows ({pct:.0f}%), {rate:.0f} rows/s{eta}"
            )
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        log.info("%s: snapshot %s, finished", self.subject, self.describe())


def estimated_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> int | None:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


CHUNK_BYTES = 64 * 1024 * 1024
"""Bytes of rows an incremental snapshot's chunk aims at (it holds them until its window closes):
``snapshot_chunk_rows`` is lowered for tables of big rows."""


def average_row_bytes(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    """The table's bytes per row, TOAST included, as the statistics estimate it (1 if unknown)."""
    row = conn.execute(
        "SELECT pg_total_relation_size(c.oid) / greatest(c.reltuples, 1)::bigint"
        " FROM pg_class c WHERE c.oid = %s::regclass",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    return max(1, int(row[0])) if row and row[0] is not None else 1


class InitialSnapshot:
    """Reads every selected table in one snapshot and publishes each row as an ``r`` event."""

    def __init__(
        self,
        config: ConnectorConfig,
        max_unacked: int,
        selected: Callable[[str, str], bool],
        subject: str,
    ) -> None:
        self.config = config
        self.max_unacked = max_unacked
        self.selected = selected
        self.subject = subject

    def run(
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
        n = 0
        with psycopg.connect(c.dsn.conninfo, application_name=f"cdc-{c.name}-snapshot") as conn:
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
                if supersede:
                    tracker.sent(txn)
                    marker = truncate_marker(schema, table, position, ordinal, reads.started_ms)
                    publisher.send_with(encode(marker, source), callback)
                label = f"{schema}.{table}"
                total = estimated_rows(conn, schema, table)
                progress = Progress(self.subject, label, total)
                self._record(sql_conn, label, "running", 0, total)
                last_note = time.monotonic()
                for change in reads.table(schema, table, n):
                    n += 1
                    if held is not None:
                        tracker.sent(txn)
                        publisher.send_with(encode(held, source), callback)
                    held = change
                    if publisher.unacked_bytes >= BUFFER_BYTES:
                        _drain(publisher, tracker, errors, self.max_unacked)
                    if n % 1000 == 0:
                        progress.add(1000)
                        if stop.is_set():
                            return n
                        _drain(publisher, tracker, errors, self.max_unacked)
                        if time.monotonic() - last_note > 5:
                            last_note = time.monotonic()
                            self._record(sql_conn, label, "running", progress.done, total)
                self._table_done(sql_conn, shapes, reads, progress, total)
            conn.rollback()
        if held is not None:
            tracker.sent(txn)
            last = encode(dataclasses.replace(held, snapshot="last"), source)
            publisher.send_with(last, callback)
        tracker.commit(txn)
        _await_delivery(stop, publisher, tracker, errors)
        log.info("%s: snapshot of %d row(s) is on Kafka", self.subject, n)
        return n

    def _table_done(
        self,
        sql_conn: psycopg.Connection[Any],
        shapes: PostgresCatalog,
        reads: _TableReads,
        progress: Progress,
        total: int | None,
    ) -> None:
        progress.add(reads.count - progress.done)
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


# -- Incremental snapshots ------------------------------------------------------------------------

EXECUTE = "execute-snapshot"
WINDOW_OPEN = "snapshot-window-open"
WINDOW_CLOSE = "snapshot-window-close"
TRUNCATE_FIRST = "cdc-truncate"
"""In an ``execute-snapshot`` signal's data: publish a truncate of each table first."""
RACE_WAIT_S = 2.0
WATERMARK_WAIT_S = 120.0


def request_snapshot(
    conn: psycopg.Connection[Any], connector: str, tables: Sequence[str], truncate: bool = False
) -> int:
    """Insert an ``execute-snapshot`` signal (Debezium's shape); return its id. ``truncate``:
    the tables' targets are emptied first (a truncate event where the signal is in the
    stream), and a snapshot of them already under way starts again."""
    ensure_source_tables(conn)
    data: dict[str, Any] = {"data-collections": list(tables)}
    if truncate:
        data[TRUNCATE_FIRST] = True
    row = conn.execute(
        "INSERT INTO cdc.signal (connector, type, data) VALUES (%s, %s, %s::jsonb) RETURNING id",
        (connector, EXECUTE, _json(data)),
    ).fetchone()
    return int(row[0]) if row else 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class _Job:
    schema: str
    table: str
    last_key: dict[str, Any] | None
    rows_done: int
    total: int | None
    epoch: int = 0
    """Bumped when the snapshot starts again: a chunk read before that moves no progress."""
    row_bytes: int = 0
    """Bytes per row, as estimated before the first chunk, then as the last chunk measured."""

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass
class _Chunk:
    id: str
    job: _Job
    rows: dict[bytes, dict[str, Any]]
    """Key (JSON) -> row, in primary-key order; rows the stream changes in the window leave."""
    key: tuple[str, ...]
    types: tuple[tuple[str, str], ...]
    last_key: dict[str, Any] | None
    complete: bool
    """The chunk reached the table's end."""
    read: int = 0
    """Rows read (before the window dropped any)."""
    open: bool = False
    epoch: int = 0
    """The job's epoch when the chunk was read."""


class IncrementalSnapshots:
    """DBLog-style snapshots of tables while the stream goes on; driven by the stream loop.

    Per chunk: write a low watermark (``snapshot-window-open``) to the signal table, read the
    next rows in primary-key order, write a high watermark (``snapshot-window-close``). When the
    stream brings the low watermark the window opens; every change the stream brings for the
    table until the high watermark removes that key from the chunk (the stream has a newer
    version). At the high watermark the chunk's remaining rows are published as ``r`` events in
    the watermark's transaction, so the slot is not confirmed past it before they are on Kafka.
    Progress (the last key of the last chunk on Kafka) goes to ``cdc.snapshots`` only then, so a
    restarted connector resumes after the last chunk that is safely delivered.
    """

    def __init__(
        self,
        config: ConnectorConfig,
        subject: str,
        conn: psycopg.Connection[Any],
        catalog: PostgresCatalog,
        enabled: bool = True,
    ) -> None:
        self.config = config
        self.subject = subject
        self.conn = conn
        self.catalog = catalog
        self.enabled = enabled
        """False when the connector's tables could not be created: signals are ignored."""
        self.queue: deque[_Job] = deque()
        self.chunk: _Chunk | None = None
        self.delivered: tuple[int, _Job, dict[str, Any] | None, int, bool, int] | None = None
        """(end of the high watermark's transaction, job, last key, rows, table done, the job's
        epoch) waiting for that position to be confirmed."""
        self.progress: dict[str, Progress] = {}
        self.chunk_started = 0.0
        if enabled:
            self._load()

    # The stream loop's hooks.

    def on_signal(self, change: Change, txn_end: int) -> list[Change]:
        """A decoded row of the signal table, in the transaction that ends at ``txn_end``;
        at a high watermark, returns the chunk's reads for the caller to publish in it."""
        row = change.after or {}
        if not self.enabled or change.op != "c" or row.get("connector") != self.config.name:
            return []
        kind, data = row.get("type"), _loads(row.get("data"))
        if kind == EXECUTE:
            truncate = data.get(TRUNCATE_FIRST) is True
            jobs = self._request(data.get("data-collections") or [], restart=truncate)
            if truncate:
                return [
                    dataclasses.replace(
                        change,
                        op="t",
                        schema=job.schema,
                        table=job.table,
                        key=None,
                        after=None,
                        types=(),
                        index=change.index + 1 + i,
                        total_order=change.index + 2 + i,
                        data_collection_order=1,
                    )
                    for i, job in enumerate(jobs)
                ]
        elif self.chunk is not None and data.get("chunk") == self.chunk.id:
            if kind == WINDOW_OPEN:
                self.chunk.open = True
            elif kind == WINDOW_CLOSE and self.chunk.open:
                return self._close_window(change, txn_end)
        return []

    def reread(self, schema: str, table: str, why: str) -> None:
        """Read a table again because its rows may hold values no change carries (a schema
        change; see :attr:`~connectors.postgres.decoding.RowDecoder.rereads`)."""
        if not self.enabled:
            log.warning(
                "%s: %s.%s: %s; it should be read again, but incremental snapshots are"
                " unavailable: its targets may differ from it",
                self.subject,
                schema,
                table,
                why,
            )
            return
        log.info("%s: %s.%s: %s: reading it again", self.subject, schema, table, why)
        self._request([f"{schema}.{table}"])

    def observe(self, change: Change) -> None:
        """A decoded change of a captured table: inside the window, it beats the chunk's row."""
        chunk = self.chunk
        if chunk is None or not chunk.open:
            return
        if change.schema != chunk.job.schema or change.table != chunk.job.table:
            return
        if change.op == "t":
            chunk.rows.clear()
        elif change.key is not None:
            chunk.rows.pop(_key_bytes(change.key), None)

    def tick(self, confirmed: int) -> None:
        """Between reads: record a delivered chunk, start the next one."""
        if self.delivered is not None:
            end, job, last_key, rows, done, epoch = self.delivered
            if confirmed < end:
                return
            self.delivered = None
            if epoch != job.epoch:
                last_key, rows, done = job.last_key, 0, False  # started again meanwhile
            job.last_key = last_key
            job.rows_done += rows
            self._record(job, "done" if done else "running")
            progress = self.progress.get(job.label)
            if progress is not None:
                progress.add(rows)
                if done:
                    progress.close()
                    del self.progress[job.label]
            if done:
                self.queue.popleft()
        if self.chunk is None and self.queue:
            try:
                self._next_chunk(self.queue[0])
            except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable) as e:
                # The table was altered between reading its columns and reading its rows:
                # this chunk is dropped (its low watermark matches no chunk); the next tick
                # reads the columns again.
                log.info("%s: a snapshot chunk met a schema change (%s)", self.subject, e)
                self.catalog.table(self.queue[0].schema, self.queue[0].table, refresh=True)
                return
            self.chunk_started = time.monotonic()
        elif self.chunk is not None and time.monotonic() - self.chunk_started > WATERMARK_WAIT_S:
            self.chunk_started = time.monotonic()
            log.warning(
                "%s: the watermarks of a snapshot chunk of %s have not come back through the"
                " stream in %.0f s; the snapshot waits for them",
                self.subject,
                self.chunk.job.label,
                WATERMARK_WAIT_S,
            )

    @property
    def busy(self) -> bool:
        return bool(self.queue) or self.chunk is not None or self.delivered is not None

    # Internals.

    def _load(self) -> None:
        rows = self.conn.execute(
            "SELECT table_name, last_key, rows_done, rows_total FROM cdc.snapshots"
            " WHERE connector = %s AND kind = 'incremental' AND state <> 'done'"
            " ORDER BY started_at, table_name",
            (self.config.name,),
        ).fetchall()
        for name, last_key, done, total in rows:
            schema, table = self._split(str(name))
            self.queue.append(_Job(schema, table, last_key, int(done), total))
            log.info(
                "%s: resuming the incremental snapshot of %s after %d row(s)",
                self.subject,
                name,
                done,
            )

    def _request(self, names: Sequence[Any], restart: bool = False) -> list[_Job]:
        """Queue a snapshot of each table; return the jobs queued or, with ``restart``, started
        again."""
        jobs = []
        for name in names:
            schema, table = self._split(str(name))
            info = self.catalog.table(schema, table, refresh=True)
            if info is None or not info.has_primary_key:
                log.error(
                    "%s: cannot snapshot %s: %s",
                    self.subject,
                    name,
                    "no such table" if info is None else "it has no primary key",
                )
                continue
            queued = [j for j in self.queue if j.schema == schema and j.table == table]
            if queued and restart:
                job = queued[0]
                job.last_key, job.rows_done, job.epoch = None, 0, job.epoch + 1
                counted = self.progress.pop(job.label, None)  # counts from 0 again
                if counted is not None and counted.bar is not None:
                    counted.bar.close()
                self._record(job, "pending", restart=True)
                jobs.append(job)
                log.info("%s: the snapshot of %s starts again", self.subject, job.label)
                continue
            if queued:
                log.info("%s: %s.%s is already being snapshotted", self.subject, schema, table)
                continue
            job = _Job(schema, table, None, 0, estimated_rows(self.conn, schema, table))
            self._record(job, "pending", restart=True)
            self.queue.append(job)
            jobs.append(job)
            log.info("%s: incremental snapshot of %s requested", self.subject, job.label)
        return jobs

    def _split(self, name: str) -> tuple[str, str]:
        return split_name(name, lambda s, t: self.catalog.table(s, t, refresh=True) is not None)

    def _next_chunk(self, job: _Job) -> None:
        info = self.catalog.table(job.schema, job.table)
        if info is None or not info.has_primary_key:
            log.error("%s: %s is gone or lost its primary key", self.subject, job.label)
            self._record(job, "done")
            self.queue.popleft()
            return
        if job.label not in self.progress:
            self.progress[job.label] = Progress(self.subject, job.label, job.total, job.rows_done)
        chunk_id = uuid.uuid4().hex
        self._signal(WINDOW_OPEN, chunk_id)
        self._await_racing_commits()
        columns = table_columns(self.conn, job.schema, job.table)
        reader = RowReader(columns)
        key = info.key
        order = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
            sql.Identifier(job.schema, job.table),
        )
        params: list[Any] = []
        if job.last_key:
            query = sql.SQL("{} WHERE ({}) > ({})").format(
                query, order, sql.SQL(", ").join(sql.Placeholder() * len(key))
            )
            params = [key_text(job.last_key.get(k)) for k in key]
        if not job.row_bytes:
            job.row_bytes = average_row_bytes(self.conn, job.schema, job.table)
        limit = max(1, min(self.config.snapshot_chunk_rows, CHUNK_BYTES // job.row_bytes))
        query = sql.SQL("{} ORDER BY {} LIMIT {}").format(query, order, sql.Literal(limit))
        rows: dict[bytes, dict[str, Any]] = {}
        last_key = job.last_key
        size = 0
        for line in copy_rows(self.conn, query, params):
            size += len(line)
            row = reader.row(line)
            last_key = {k: row[k] for k in key}
            rows[_key_bytes(last_key)] = row
        if rows:
            job.row_bytes = max(1, size // len(rows))
        self._signal(WINDOW_CLOSE, chunk_id)
        self.chunk = _Chunk(
            chunk_id,
            job,
            rows,
            key,
            reader.types,
            last_key,
            complete=len(rows) < limit,
            read=len(rows),
            epoch=job.epoch,
        )
        if job.rows_done == 0 and job.last_key is None:
            self._record(job, "running")

    def _close_window(self, watermark: Change, txn_end: int) -> list[Change]:
        chunk = self.chunk
        assert chunk is not None
        self.chunk = None
        reads = [
            Change(
                op="r",
                schema=chunk.job.schema,
                table=chunk.job.table,
                key={k: row[k] for k in chunk.key},
                before=None,
                after=row,
                commit_lsn=watermark.commit_lsn,
                index=watermark.index + 1 + i,
                lsn=watermark.lsn,
                xid=watermark.xid,
                commit_ts_ms=watermark.commit_ts_ms,
                types=chunk.types,
                snapshot="incremental",
                last_commit_lsn=watermark.last_commit_lsn,
                total_order=watermark.index + 2 + i,
                data_collection_order=i + 1,
            )
            for i, row in enumerate(chunk.rows.values())
        ]
        self.delivered = (
            txn_end,
            chunk.job,
            chunk.last_key,
            chunk.read,
            chunk.complete,
            chunk.epoch,
        )
        log.debug(
            "%s: chunk of %s: %d row(s) read, %d left out (changed in the window)",
            self.subject,
            chunk.job.label,
            chunk.read,
            chunk.read - len(reads),
        )
        return reads

    def _signal(self, kind: str, chunk_id: str) -> None:
        self.conn.execute(
            "INSERT INTO cdc.signal (connector, type, data) VALUES (%s, %s, %s::jsonb)",
            (self.config.name, kind, _json({"chunk": chunk_id})),
        )

    def _await_racing_commits(self) -> None:
        """Let transactions whose commit record precedes the low watermark become visible.

        PostgreSQL writes a commit record before the transaction leaves the proc array; a chunk
        read in that moment would miss a change the stream delivers *before* the window, and
        publish an older row after it. Transactions still running when the watermark committed
        are waited for until they are visible or are known not to have committed (clog), which
        for a commit already in the WAL takes microseconds; long transactions are not waited
        for: they commit after the watermark, inside the window or after it.
        """
        snapshot = self.conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        if snapshot is None:
            return
        deadline = time.monotonic() + RACE_WAIT_S
        while time.monotonic() < deadline:
            row = self.conn.execute(
                "SELECT count(*) FILTER (WHERE pg_xact_status(x) <> 'in progress'),"
                " count(*) FROM pg_snapshot_xip(%s::pg_snapshot) x"
                " WHERE x IN (SELECT pg_snapshot_xip(pg_current_snapshot()))",
                (snapshot[0],),
            ).fetchone()
            racing, running = (int(row[0]), int(row[1])) if row else (0, 0)
            if racing == 0:
                if running:
                    time.sleep(0.01)  # a commit between its WAL record and the clog
                return
            time.sleep(0.001)

    def _record(self, job: _Job, state: str, restart: bool = False) -> None:
        record_progress(
            self.conn,
            self.config.name,
            "incremental",
            job.label,
            state,
            job.rows_done,
            job.total,
            job.last_key,
            restart,
        )


def record_progress(
    conn: psycopg.Connection[Any],
    connector: str,
    kind: str,
    table: str,
    state: str,
    rows_done: int,
    rows_total: int | None,
    last_key: dict[str, Any] | None = None,
    restart: bool = False,
) -> None:
    """Upsert a table's row of ``cdc.snapshots``; ``restart`` starts its clock again."""
    conn.execute(
        "INSERT INTO cdc.snapshots AS s (connector, kind, table_name, state, last_key,"
        " rows_done, rows_total) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)"
        " ON CONFLICT (connector, kind, table_name) DO UPDATE SET state = EXCLUDED.state,"
        " last_key = EXCLUDED.last_key, rows_done = EXCLUDED.rows_done,"
        " rows_total = EXCLUDED.rows_total, updated_at = now(),"
        " started_at = CASE WHEN %s THEN now() ELSE s.started_at END",
        (
            connector,
            kind,
            table,
            state,
            None if last_key is None else _json(last_key),
            rows_done,
            rows_total,
            restart,
        ),
    )


def _loads(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if isinstance(text, str) else text
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _key_bytes(key: dict[str, Any]) -> bytes:
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
