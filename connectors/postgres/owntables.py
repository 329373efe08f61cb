"""The connector's own tables in the source database (schema ``cdc``), their DDL, and every
write to them.

``cdc.signal`` carries watermarks and snapshot requests through the WAL; ``cdc.snapshots``
remembers snapshot progress, so that a restarted connector redoes an interrupted initial snapshot
and resumes an incremental one after its last finished chunk; ``cdc.shapes`` and
``cdc.partitions`` keep table shapes and partition trees across restarts.
"""

from __future__ import annotations

__all__ = [
    "OWN_SCHEMA",
    "SIGNAL_TABLE",
    "ensure_source_tables",
    "initial_state",
    "mark_initial",
    "record_progress",
    "request_snapshot",
    "write_signal",
]

import logging
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from cdc.errors import describe

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


EXECUTE = "execute-snapshot"
TRUNCATE_FIRST = "cdc-truncate"
"""In an ``execute-snapshot`` signal's data: publish a truncate of each table first."""


def write_signal(
    conn: psycopg.Connection[Any], connector: str, kind: str, data: dict[str, Any]
) -> int:
    """Insert a row into ``cdc.signal``; return its id."""
    row = conn.execute(
        "INSERT INTO cdc.signal (connector, type, data) VALUES (%s, %s, %s::jsonb) RETURNING id",
        (connector, kind, _json(data)),
    ).fetchone()
    return int(row[0]) if row else 0


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
    return write_signal(conn, connector, EXECUTE, data)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


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


def mark_initial(conn: psycopg.Connection[Any], connector: str, state: str) -> None:
    """Set the state of the connector's initial snapshot; ``pending`` starts its clock."""
    conn.execute(
        "INSERT INTO cdc.snapshots (connector, kind, table_name, state) VALUES (%s, 'initial',"
        " '*', %s) ON CONFLICT (connector, kind, table_name) DO UPDATE SET state ="
        " EXCLUDED.state, updated_at = now(),"
        " started_at = CASE WHEN EXCLUDED.state = 'pending' THEN now()"
        " ELSE cdc.snapshots.started_at END",
        (connector, state),
    )


def initial_state(conn: psycopg.Connection[Any], connector: str) -> str | None:
    """``cdc.snapshots``' state of the connector's initial snapshot, if it has one."""
    row = conn.execute(
        "SELECT state FROM cdc.snapshots WHERE connector = %s AND kind = 'initial'"
        " AND table_name = '*'",
        (connector,),
    ).fetchone()
    return None if row is None else str(row[0])


def save_shape(
    conn: psycopg.Connection[Any], connector: str, relid: int, name: str, columns: dict[str, str]
) -> None:
    """Remember in ``cdc.shapes`` the name and columns table ``relid`` was published with."""
    conn.execute(
        "INSERT INTO cdc.shapes (connector, relid, table_name, columns) VALUES (%s, %s,"
        " %s, %s::jsonb) ON CONFLICT (connector, relid) DO UPDATE SET table_name ="
        " EXCLUDED.table_name, columns = EXCLUDED.columns, updated_at = now()",
        (connector, relid, name, _json(columns)),
    )


def save_partitions(
    conn: psycopg.Connection[Any], connector: str, label: str, oids: frozenset[int] | None
) -> None:
    """Remember in ``cdc.partitions`` the partitions of tree ``label`` (None: forget it)."""
    if oids is None:
        conn.execute(
            "DELETE FROM cdc.partitions WHERE connector = %s AND table_name = %s",
            (connector, label),
        )
        return
    conn.execute(
        "INSERT INTO cdc.partitions (connector, table_name, partitions)"
        " VALUES (%s, %s, %s::bigint[]::oid[]) ON CONFLICT (connector, table_name)"
        " DO UPDATE SET partitions = EXCLUDED.partitions, updated_at = now()",
        (connector, label, sorted(oids)),
    )


def forget_partitions(conn: psycopg.Connection[Any], connector: str) -> None:
    """Forget every partition tree remembered in ``cdc.partitions`` (a new slot)."""
    conn.execute("DELETE FROM cdc.partitions WHERE connector = %s", (connector,))
