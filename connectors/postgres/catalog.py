"""Table metadata from the source database, cached: columns, key columns, replica identity.

The decoder asks for it when wal2json's message alone cannot say (which columns an update left
out because their TOASTed value did not change, which columns identify a row of a table without a
primary key). Answers are cached per table and refreshed when a message shows columns the cache
does not know (a column was added).
"""

from __future__ import annotations

__all__ = ["PostgresCatalog", "selected_tables"]

from collections.abc import Callable, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from connectors.postgres.wal2json import TableInfo

_IDENTITY: dict[str, Literal["default", "full", "index", "nothing"]] = {
    "d": "default",
    "f": "full",
    "i": "index",
    "n": "nothing",
}

_TABLE = """
SELECT c.oid, c.relreplident,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns,
       array(SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS pk,
       array(SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY k.ord) AS ident
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


class PostgresCatalog:
    """:class:`~connectors.postgres.wal2json.Catalog` over an open connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._cache: dict[tuple[str, str], TableInfo | None] = {}

    def table(self, schema: str, table: str, refresh: bool = False) -> TableInfo | None:
        key = (schema, table)
        if refresh or key not in self._cache:
            self._cache[key] = self._load(schema, table)
        return self._cache[key]

    def current_values(
        self, schema: str, table: str, key: dict[str, Any], columns: Sequence[str]
    ) -> dict[str, Any] | None:
        # Raw text results: each type's output function, exactly what wal2json prints.
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(schema, table),
            sql.SQL(" AND ").join(sql.SQL("{}::text = %s").format(sql.Identifier(k)) for k in key),
        )
        cur = self._conn.execute(query, [_key_text(v) for v in key.values()])
        result = cur.pgresult
        if result is None or result.ntuples == 0:
            return None
        types = self._types(schema, table)
        row = {}
        for i, column in enumerate(columns):
            raw = result.get_value(0, i)
            text = None if raw is None else bytes(raw).decode()
            if text is not None and types.get(column) == "bytea":
                text = text[2:]  # wal2json prints bytea's hex digits without the \x
            row[column] = text
        return row

    def _types(self, schema: str, table: str) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0",
            (schema, table),
        ).fetchall()
        return {str(n): str(t) for n, t in rows}

    def _load(self, schema: str, table: str) -> TableInfo | None:
        row = self._conn.execute(_TABLE, (schema, table)).fetchone()
        if row is None:
            return None
        _, replident, columns, pk, ident = row
        identity = _IDENTITY.get(replident, "default")
        if pk:
            key = tuple(pk)
        elif identity == "index" and ident:
            key = tuple(ident)
        elif identity == "full":
            key = tuple(columns)
        else:
            key = ()
        return TableInfo(tuple(columns), key, identity, has_primary_key=bool(pk))


def _key_text(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def selected_tables(
    conn: psycopg.Connection[Any], selected: Callable[[str, str], bool]
) -> list[tuple[str, str]]:
    """The ordinary and partitioned tables that the connector's globs select, right now."""
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
    ).fetchall()
    return [(s, t) for s, t in rows if selected(s, t)]
