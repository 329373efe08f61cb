"""Incremental snapshots (DBLog, as Debezium does them): a table read in primary-key chunks
while streaming goes on.

Each chunk is read between two watermarks written to the signal table, and a chunk row that the
stream changed between the watermarks is dropped, since the stream already carries a newer version
of it (see :class:`IncrementalSnapshots`). A chunk's rows carry ``cdc-event-id`` ``{H}:{n}``, H
being the commit LSN of the chunk's closing watermark: after everything the stream delivered
before it, before everything after it.
"""

from __future__ import annotations

__all__ = ["IncrementalSnapshots"]

import dataclasses
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql

from cdc.config import ConnectorConfig
from cdc.events import Change
from connectors.postgres.catalog import PostgresCatalog, key_text, split_name
from connectors.postgres.owntables import (
    EXECUTE,
    SIGNAL_TABLE,
    TRUNCATE_FIRST,
    record_progress,
    write_signal,
)
from connectors.postgres.progress import Progress
from connectors.postgres.rows import (
    RowReader,
    average_row_bytes,
    copy_rows,
    estimated_rows,
    table_columns,
)
from connectors.postgres.stats import SourceStats

log = logging.getLogger(__name__)

_SIGNAL_SCHEMA, _SIGNAL_NAME = SIGNAL_TABLE
WINDOW_OPEN = "snapshot-window-open"
WINDOW_CLOSE = "snapshot-window-close"
RACE_WAIT_S = 2.0
WATERMARK_WAIT_S = 120.0

CHUNK_BYTES = 64 * 1024 * 1024
"""Bytes of rows an incremental snapshot's chunk aims at (it holds them until its window closes):
``snapshot_chunk_rows`` is lowered for tables of big rows."""


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
        stats: SourceStats | None = None,
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
        self.stats = stats
        self.chunk_started = 0.0
        if enabled:
            self._load()

    # The stream loop's hooks.

    def on_change(self, change: Change, txn_end: int) -> list[Change] | None:
        """Every change the stream decoded, in the transaction that ends at ``txn_end``: a
        signal's reads to publish instead of it (:meth:`on_signal`), or None to publish it."""
        if change.table == _SIGNAL_NAME and change.schema == _SIGNAL_SCHEMA:
            return self.on_signal(change, txn_end)
        if self.chunk is not None:
            self.observe(change)
        return None

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
            progress = Progress(self.subject, job.label, job.total, job.rows_done)
            self.progress[job.label] = progress
            if self.stats is not None:
                self.stats.snapshot("incremental", progress)
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
        write_signal(self.conn, self.config.name, kind, {"chunk": chunk_id})

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


def _loads(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if isinstance(text, str) else text
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _key_bytes(key: dict[str, Any]) -> bytes:
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
