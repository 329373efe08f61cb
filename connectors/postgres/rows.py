"""Reading a table's rows with ``COPY ... TO STDOUT``, as wal2json would print them.

Rows are read in text format, so each value is its type's output function's text, as wal2json
prints it; :class:`RowReader` then gives it wal2json's JSON shape (integers and floats as numbers,
numeric as an exact string, booleans, bytea as bare hex), so a snapshot row and a streamed row of
the same content are the same event body.
"""

from __future__ import annotations

__all__ = [
    "Column",
    "RowReader",
    "average_row_bytes",
    "copy_rows",
    "estimated_rows",
    "table_columns",
]

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc.sqltext import with_params
from connectors.postgres.decoding import JSON_KINDS, NOT_NUMBERS

log = logging.getLogger(__name__)


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


def estimated_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> int | None:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def average_row_bytes(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    """The table's bytes per row, TOAST included, as the statistics estimate it (1 if unknown)."""
    row = conn.execute(
        "SELECT pg_total_relation_size(c.oid) / greatest(c.reltuples, 1)::bigint"
        " FROM pg_class c WHERE c.oid = %s::regclass",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    return max(1, int(row[0])) if row and row[0] is not None else 1
