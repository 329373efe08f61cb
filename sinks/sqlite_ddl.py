"""The SQLite sink's types, names and literals: the column affinity of a source type, identifier
quoting and case folding, the literals of DDL defaults, and the sink's bookkeeping tables.

Column affinities: integers and booleans INTEGER, ``bytea`` BLOB, floats none (see
:func:`affinity`), everything else TEXT, including numeric, which stays exact as its decimal text.
"""

from __future__ import annotations

__all__ = [
    "BOOKKEEPING",
    "INT64_MAX",
    "INT64_MIN",
    "affinity",
    "column_def",
    "fold",
    "literal",
    "quote",
    "with_renamed",
]

import contextlib
import dataclasses
import math
from typing import Any

from cdc.records import SinkEvent

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS _cdc_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS _cdc_deletes (
    target TEXT NOT NULL, key TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS _cdc_truncates (
    target TEXT PRIMARY KEY, lsn INTEGER NOT NULL, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _cdc_applied (
    target TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (target, lsn, idx));
CREATE TABLE IF NOT EXISTS _cdc_debts (
    target TEXT NOT NULL, row_hash TEXT NOT NULL, debt INTEGER NOT NULL,
    PRIMARY KEY (target, row_hash));
CREATE TABLE IF NOT EXISTS _cdc_columns (
    target TEXT NOT NULL, name TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    dropped INTEGER NOT NULL, PRIMARY KEY (target, name));
"""

_INTEGER = ("smallint", "integer", "bigint", "oid", "boolean")
_REAL = ("real", "double precision")


def affinity(source_type: str) -> str:
    """The SQLite column type for a PostgreSQL type name. Floats get no declared type (so BLOB
    affinity: values are kept as given): a REAL column stores a float with an integral value as
    an integer, and -0.0 comes back as 0.0. Without one, a double is stored as its 8 bytes."""
    if source_type in _INTEGER:
        return "INTEGER"
    if source_type in _REAL:
        return ""
    if source_type == "bytea":
        return "BLOB"
    return "TEXT"


def quote(identifier: str) -> str:
    """SQLite's identifier quoting (the equivalent of psycopg.sql.Identifier)."""
    return '"' + identifier.replace('"', '""') + '"'


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """``name`` as SQLite compares identifiers: ASCII letters without case."""
    return name.translate(_ASCII_LOWER)


def with_renamed(event: SinkEvent, names: dict[str, str]) -> SinkEvent:
    """``event`` with its columns ``names`` (old -> new) renamed."""

    def image(values: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if values is None else {names.get(c, c): v for c, v in values.items()}

    return dataclasses.replace(
        event,
        key=image(event.key),
        before=image(event.before),
        after=image(event.after),
        unavailable=frozenset(names.get(c, c) for c in event.unavailable),
        types={names.get(c, c): t for c, t in event.types.items()},
        missing={names.get(c, c): v for c, v in event.missing.items()},
    )


def column_def(name: str, kind: str, default: str | None) -> str:
    """A column definition; ``default`` an SQL literal (:func:`literal`)."""
    column = f"{quote(name)} {kind}"
    return column if default is None else f"{column} DEFAULT {default}"


def literal(text: str, kind: str, source_type: str) -> str:
    """The SQL literal of a value given as its PostgreSQL text, stored as the sink
    stores the events' values (DDL takes no parameters)."""
    if source_type == "boolean":
        return "1" if text == "t" else "0"
    if kind == "BLOB" and text.startswith("\\x"):
        return "X'" + bytes.fromhex(text[2:]).hex() + "'"
    if kind == "INTEGER":
        with contextlib.suppress(ValueError):
            value = int(text)
            if INT64_MIN <= value <= INT64_MAX:
                return str(value)
    if kind == "REAL":
        with contextlib.suppress(ValueError):
            number = float(text)
            if math.isfinite(number):
                return repr(number)
    return "'" + text.replace("'", "''") + "'"
