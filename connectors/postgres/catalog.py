"""Table metadata from the source database, cached: columns, key columns, replica identity.

The decoder asks for it when the plugin's message alone cannot say (which columns an update left
out because their TOASTed value did not change, which columns identify a row of a table without a
primary key). Answers are cached per table and refreshed when a message shows columns the cache
does not know (a column was added). pgoutput's relation messages are answered by the table's OID
(:meth:`PostgresCatalog.relation`), which a rename keeps.
"""

from __future__ import annotations

__all__ = ["PostgresCatalog", "key_text", "partition_leaves", "selected_tables", "split_name"]

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from cdc.sqltext import with_params
from connectors.postgres.decoding import TableInfo
from connectors.postgres.owntables import save_shape

log = logging.getLogger(__name__)

_VISIBLE = """
WITH s AS (SELECT pg_current_snapshot() AS snap),
     x AS (SELECT snap, ((pg_snapshot_xmax(snap)::text::bigint >> 32) << 32) + %s AS xid,
                  pg_snapshot_xmax(snap)::text::bigint AS xmax FROM s)
SELECT pg_visible_in_snapshot(
    (CASE WHEN xid >= xmax THEN xid - 4294967296 ELSE xid END)::text::xid8, snap) FROM x
"""

VISIBILITY_WAIT_S = 30.0
"""How long a read waits for a decoded transaction to become visible (it takes microseconds)."""

_IDENTITY: dict[str, Literal["default", "full", "index", "nothing"]] = {
    "d": "default",
    "f": "full",
    "i": "index",
    "n": "nothing",
}

# Generated columns are left out of events (pgoutput before 18 does not publish them), so they
# are not among ``columns``: an update without them does not lack unchanged TOASTed values.
_TABLE = """
SELECT c.oid, c.relreplident, c.relkind,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attgenerated = '' ORDER BY a.attnum) AS columns,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attgenerated <> '' ORDER BY a.attnum) AS generated,
       array(SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS pk,
       array(SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY k.ord) AS ident,
       array(SELECT array[a.attname::text, (a.attmissingval::text::text[])[1]]
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND a.attgenerated = '' AND a.atthasmissing
             ORDER BY a.attnum) AS missing,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attgenerated = '' AND a.attlen = -1 AND a.attstorage <> 'p') AS toastable,
       array(SELECT array[a.attname::text, format_type(a.atttypid, a.atttypmod)]
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum) AS shape,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attgenerated = '' AND NOT a.atthasmissing
             AND (a.atthasdef OR a.attnotnull)) AS unknown
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
"""
"""``missing``: the value rows that predate a column added with a default hold
(``attmissingval``). ``unknown``: columns whose value in such rows the catalog cannot tell (a
default or NOT NULL, but no ``attmissingval``: a volatile default, or the table was rewritten).
``shape``: every column's ``format_type``."""
_BY_NAME = _TABLE + "WHERE n.nspname = %s AND c.relname = %s"
_BY_OID = _TABLE + "WHERE c.oid = %s"
_ALL = (
    _TABLE
    + "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
)


_ROOT = """
SELECT rn.nspname::text, r.relname::text FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relispartition
"""


class PostgresCatalog:
    """:class:`~connectors.postgres.decoding.Catalog` over an open connection."""

    def __init__(self, conn: psycopg.Connection[Any], connector: str | None = None) -> None:
        """``connector``: whose shapes :meth:`known_shape` and :meth:`remember_shape` keep in
        ``cdc.shapes``; None: none are kept."""
        self._conn = conn
        self.connector = connector
        self._cache: dict[tuple[str, str], TableInfo | None] = {}
        self._type_names: dict[tuple[int, int], str] = {}
        self._seen = 0

    def table(
        self, schema: str, table: str, refresh: bool = False, xid: int = 0
    ) -> TableInfo | None:
        key = (schema, table)
        if refresh or key not in self._cache:
            self._see(xid)
            self._cache[key] = self._load(schema, table)
        return self._cache[key]

    def relation(self, relid: int, xid: int = 0) -> TableInfo | None:
        self._see(xid)
        return self._info(self._conn.execute(_BY_OID, (relid,)).fetchone())

    def relations(self, xid: int = 0) -> dict[int, TableInfo]:
        self._see(xid)
        rows = self._conn.execute(_ALL).fetchall()
        return {int(row[0]): info for row in rows if (info := self._info(row)) is not None}

    def known_shape(self, relid: int) -> tuple[str, dict[str, str]] | None:
        """The name and columns (name -> type) the connector last published table ``relid``
        with, if it ever did."""
        if self.connector is None:
            return None
        try:
            row = self._conn.execute(
                "SELECT table_name, columns FROM cdc.shapes WHERE connector = %s AND relid = %s",
                (self.connector, relid),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # not made (ensure_source_tables): do without
            self.connector = None
            return None
        return None if row is None else (str(row[0]), dict(row[1]))

    def remember_shape(self, relid: int, name: str, columns: dict[str, str]) -> None:
        if self.connector is None:
            return
        # As the decoder compares them: wal2json writes "char" without format_type's quotes.
        columns = {c: t.replace('"', "") for c, t in columns.items()}
        try:
            save_shape(self._conn, self.connector, relid, name, columns)
        except psycopg.errors.UndefinedTable:  # not made (ensure_source_tables): do without
            self.connector = None

    def partition_root(self, schema: str, table: str, xid: int = 0) -> tuple[str, str]:
        """The partitioned table at the top of the tree ``schema.table`` is a partition of, as
        the catalog says now; the table itself when it is no partition (or is gone)."""
        self._see(xid)
        row = self._conn.execute(_ROOT, (schema, table)).fetchone()
        return (str(row[0]), str(row[1])) if row else (schema, table)

    def type_name(self, oid: int, typmod: int) -> str:
        key = (oid, typmod)
        name = self._type_names.get(key)
        if name is None:
            row = self._conn.execute("SELECT format_type(%s, %s)", key).fetchone()
            name = self._type_names[key] = str(row[0]) if row else f"oid {oid}"
        return name

    def current_values(
        self, schema: str, table: str, key: dict[str, Any], columns: Sequence[str], xid: int = 0
    ) -> dict[str, Any] | None:
        self._see(xid)
        # Raw text results: each type's output function, exactly what wal2json prints.
        query = sql.SQL("SELECT true, {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(schema, table),
            sql.SQL(" AND ").join(sql.SQL("{}::text = %s").format(sql.Identifier(k)) for k in key),
        )
        cur = self._conn.execute(
            with_params(query, self._conn), [key_text(v) for v in key.values()]
        )
        result = cur.pgresult
        if result is None or result.ntuples == 0:
            return None  # the row is gone: a later event deletes it or moves it on
        types = self._types(schema, table)
        row = {}
        for i, column in enumerate(columns):
            raw = result.get_value(0, 1 + i)
            text = None if raw is None else bytes(raw).decode()
            if text is not None and types.get(column) == "bytea":
                text = text[2:]  # wal2json prints bytea's hex digits without the \x
            row[column] = text
        return row

    def _see(self, xid: int) -> None:
        """Wait until this connection's snapshots see transaction ``xid`` as finished.

        The walsender may decode a commit a moment before the committing backend leaves the proc
        array: for that moment other sessions still see the transaction as running, so a table it
        created or a row it moved would not be found. Once one snapshot sees it, every later one
        does. ``xid`` is wal2json's 32-bit id; its epoch comes from the snapshot's xmax.
        """
        if not xid or xid == self._seen:
            return
        deadline = time.monotonic() + VISIBILITY_WAIT_S
        pause = 0.0005
        while True:
            row = self._conn.execute(_VISIBLE, (xid,)).fetchone()
            if row is not None and row[0]:
                self._seen = xid
                return
            if time.monotonic() > deadline:
                log.warning(
                    "transaction %d is still not visible after %.0f s; reading anyway",
                    xid,
                    VISIBILITY_WAIT_S,
                )
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _types(self, schema: str, table: str) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0",
            (schema, table),
        ).fetchall()
        return {str(n): str(t) for n, t in rows}

    def _leaves_full(self, root: int) -> bool:
        row = self._conn.execute(
            "SELECT count(*) > 0 AND bool_and(relreplident = 'f') FROM pg_class"
            " WHERE relispartition AND relkind = 'r' AND pg_partition_root(oid) = %s",
            (root,),
        ).fetchone()
        return bool(row and row[0])

    def _load(self, schema: str, table: str) -> TableInfo | None:
        return self._info(self._conn.execute(_BY_NAME, (schema, table)).fetchone())

    def _info(self, row: Any) -> TableInfo | None:
        if row is None:
            return None
        relid, replident, relkind, columns, generated, pk, ident = row[:7]
        missing, toastable, shape, unknown = row[7:]
        identity = _IDENTITY.get(replident, "default")
        if relkind == "p" and not pk and identity != "full" and self._leaves_full(relid):
            # PostgreSQL sets a replica identity per table, and logs the partitions' old rows
            # by theirs: FULL on every partition is FULL for the partitioned table.
            identity = "full"
        if pk:
            key = tuple(pk)
        elif identity == "index" and ident:
            key = tuple(ident)
        elif identity == "full":
            key = tuple(columns)
        else:
            key = ()
        return TableInfo(
            tuple(columns),
            key,
            identity,
            has_primary_key=bool(pk),
            generated=tuple(generated),
            missing=tuple((str(name), str(value)) for name, value in missing if value is not None),
            toastable=frozenset(toastable),
            shape=frozenset((str(name), str(type_name)) for name, type_name in shape),
            unknown=frozenset(unknown),
            relid=int(relid),
        )


def key_text(value: Any) -> str | None:
    """A key value from a decoded row as the text its column's input function reads."""
    if value is None:
        return None
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def selected_tables(
    conn: psycopg.Connection[Any],
    selected: Callable[[str, str], bool],
    partitions: Literal["root", "leaf"] = "root",
) -> list[tuple[str, str]]:
    """The tables that the connector's globs select, right now, as they are published: ordinary
    tables and partitioned tables (whose partitions are published through them), or, with
    ``partitions = "leaf"``, ordinary tables and partitions."""
    where = (
        "c.relkind IN ('r', 'p') AND NOT c.relispartition"
        if partitions == "root"
        else "c.relkind = 'r'"
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE {}"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
        ).format(sql.SQL(where))
    ).fetchall()
    return [(s, t) for s, t in rows if selected(s, t)]


def split_name(name: str, exists: Callable[[str, str], bool]) -> tuple[str, str]:
    """The schema and table a ``schema.table`` name (of a snapshot request) means; ``table``
    alone is in ``public``. Either may hold dots: split at the first dot after which
    ``exists``, else at the first."""
    if "." not in name:
        return "public", name
    splits = [(name[:i], name[i + 1 :]) for i, c in enumerate(name) if c == "."]
    if len(splits) > 1:
        for schema, table in splits:
            if exists(schema, table):
                return schema, table
    return splits[0]


def partition_leaves(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], frozenset[str]]:
    """Per partitioned table at the top of a tree, its partitions that hold rows, as
    ``schema.table`` names."""
    rows = conn.execute(
        "SELECT rn.nspname::text, r.relname::text, n.nspname::text || '.' || c.relname::text"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_class r ON r.oid = pg_partition_root(c.oid)"
        " JOIN pg_namespace rn ON rn.oid = r.relnamespace"
        " WHERE c.relispartition AND c.relkind = 'r'"
    ).fetchall()
    leaves: dict[tuple[str, str], set[str]] = {}
    for schema, table, leaf in rows:
        leaves.setdefault((schema, table), set()).add(leaf)
    return {root: frozenset(names) for root, names in leaves.items()}
