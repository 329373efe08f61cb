"""The PostgreSQL sink's target tables: the type mapping and the DDL that makes, widens and
describes them, and the sink's own bookkeeping tables (schema ``cdc``).

Target tables are created from the events: column types from the ``cdc-types`` header (a type
the target does not know, such as the source's enums and domains, becomes ``text``), the primary
key from the event key. Columns that appear later are added; a column the source altered to a
type that holds more is widened (:func:`widened`), never narrowed.
"""

from __future__ import annotations

__all__ = ["BOOKKEEPING", "Schema", "Table", "widened"]

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS cdc;
CREATE TABLE IF NOT EXISTS cdc.offsets (
    group_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,
    next_offset bigint NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS cdc.deletes (
    target text NOT NULL, key jsonb NOT NULL, lsn bigint NOT NULL, idx int NOT NULL,
    PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS cdc.truncates (
    target text PRIMARY KEY, lsn bigint NOT NULL, idx int NOT NULL);
CREATE TABLE IF NOT EXISTS cdc.applied (
    target text NOT NULL, lsn bigint NOT NULL, idx int NOT NULL, PRIMARY KEY (target, lsn, idx));
CREATE TABLE IF NOT EXISTS cdc.debts (
    target text NOT NULL, row_hash text NOT NULL, debt int NOT NULL,
    PRIMARY KEY (target, row_hash));
CREATE TABLE IF NOT EXISTS cdc.columns (
    target text NOT NULL, name text NOT NULL, lsn bigint NOT NULL, idx int NOT NULL,
    dropped boolean NOT NULL, PRIMARY KEY (target, name));
"""


@dataclass
class Table:
    """What the target knows of one of its tables."""

    schema: str
    name: str
    columns: dict[str, str] = field(default_factory=dict)
    """Column name -> type, as created (``format_type``)."""
    key: tuple[str, ...] = ()
    statements: dict[tuple[Any, ...], bytes] = field(default_factory=dict)
    """Its DML as rendered, by kind and columns: a batch does not compose its SQL again."""
    checked: set[tuple[str, str]] = field(default_factory=set)
    """``(column, source type)`` pairs the table already holds or was widened for."""

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


class Schema:
    """What the sink knows of its target's tables, kept up to date by the DDL it runs."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.tables: dict[str, Table] = {}
        """Target table (``schema.name``) -> as last described or made."""
        self.types: dict[str, str] = {}
        """Source type -> the target's type for it (:meth:`_type_for`)."""

    def lock(self) -> None:
        """Take the DDL lock until the transaction ends: one process of a group at a time
        changes the target's tables or their bookkeeping."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc-sink-ddl'))")

    def table(
        self,
        target_schema: str,
        target_name: str,
        wanted: Mapping[str, str],
        key: tuple[str, ...],
        defaults: Mapping[str, str],
    ) -> Table:
        """The table ``target_schema.target_name``, made or widened to hold the ``wanted``
        columns (name -> source type); a column it adds takes its default from ``defaults``
        (the value rows that predate it hold at the source)."""
        name = f"{target_schema}.{target_name}"
        known = self.tables.get(name)
        if known is not None and all((c, t) in known.checked for c, t in wanted.items()):
            return known
        self.lock()
        found = self.describe(target_schema, target_name)
        if found is None:
            found = self._create(target_schema, target_name, wanted, key, defaults)
        elif found.key and "_cdc_lsn" not in found.columns:
            self._add_versions(found)
        for column, source_type in wanted.items():
            pg_type = self._type_for(source_type)
            current = found.columns.get(column)
            if current is None:
                # Rows that predate the column hold its default at the source, though no event
                # says so (PostgreSQL does not rewrite them): so do they here, and so do rows
                # that older events still to come insert.
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
                        found.ident, _column(column, pg_type, defaults.get(column))
                    )
                )
                found.columns[column] = pg_type
                found.statements.clear()  # rendered without it (dropped_columns = "drop")
                log.info("added column %s %s to %s", column, pg_type, found.label)
            elif wider := widened(current, pg_type):
                # The source's column was altered to a type that holds more: follow it, or
                # its new values would not fit. Never the other way: an older event still
                # carrying the old type must not narrow the column back.
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {c} TYPE {t} USING {c}::{t}").format(
                        found.ident, c=sql.Identifier(column), t=sql.SQL(wider)
                    )
                )
                found.columns[column] = wider
                found.statements.clear()  # they cast values to the old type
                log.info(
                    "changed column %s of %s from %s to %s", column, found.label, current, wider
                )
            found.checked.add((column, source_type))
        self.tables[name] = found
        return found

    def _add_versions(self, table: Table) -> None:
        """Give a table made by someone else (with a primary key: the target of a topic whose
        records carry no types, such as Debezium's without schema) the sink's row versions. Its
        rows take version 0, older than any event."""
        self.conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS _cdc_lsn bigint NOT NULL DEFAULT 0,"
                " ADD COLUMN IF NOT EXISTS _cdc_index int NOT NULL DEFAULT 0"
            ).format(table.ident)
        )
        table.columns.update({"_cdc_lsn": "bigint", "_cdc_index": "integer"})
        table.statements.clear()
        log.info("added the sink's version columns _cdc_lsn, _cdc_index to %s", table.label)

    def describe(self, schema: str, name: str) -> Table | None:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
            " coalesce(a.attnum = ANY(i.indkey), false)"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
            " ORDER BY a.attnum",
            (schema, name),
        ).fetchall()
        if not rows:
            return None
        return Table(
            schema,
            name,
            {str(n): str(t) for n, t, _ in rows},
            tuple(str(n) for n, _, is_key in rows if is_key),
        )

    def _create(
        self,
        schema: str,
        name: str,
        columns: Mapping[str, str],
        key: tuple[str, ...],
        defaults: Mapping[str, str],
    ) -> Table:
        types = {c: self._type_for(t) for c, t in columns.items()}
        parts: list[sql.Composable] = [_column(c, t, defaults.get(c)) for c, t in types.items()]
        parts += [sql.SQL("_cdc_lsn bigint NOT NULL"), sql.SQL("_cdc_index int NOT NULL")]
        if key:
            parts.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
            )
        else:
            # No key: rows are told apart by the event that inserted them, and found by a hash
            # of their content (tables whose REPLICA IDENTITY FULL makes the whole row the key).
            parts.append(sql.SQL("_cdc_row text"))
            parts.append(sql.SQL("UNIQUE (_cdc_lsn, _cdc_index)"))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        self.conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                sql.Identifier(schema, name), sql.SQL(", ").join(parts)
            )
        )
        if not key:
            # Named by PostgreSQL: a name of its own made of a long table's would be cut to 63
            # bytes, as the table's was, and IF NOT EXISTS then skipped it as that table.
            self.conn.execute(
                sql.SQL("CREATE INDEX ON {} (_cdc_row)").format(sql.Identifier(schema, name))
            )
        log.info("created table %s.%s", schema, name)
        described = self.describe(schema, name)
        assert described is not None
        return described

    def _type_for(self, source_type: str) -> str:
        """The source's type if the target knows it, else text (enums, domains, extensions)."""
        if not source_type:
            return "text"
        known = self.types.get(source_type)
        if known is None:
            row = self.conn.execute("SELECT to_regtype(%s)", (source_type,)).fetchone()
            known = self.types[source_type] = (
                "text" if row is None or row[0] is None else source_type
            )
        return known

    # -- DML ------------------------------------------------------------------------------------


_WIDER_BASES = {
    "smallint": ("integer", "bigint", "numeric"),
    "integer": ("bigint", "numeric"),
    "bigint": ("numeric",),
    "real": ("double precision",),
    "character": ("character varying", "text"),
    "character varying": ("text",),
    "bit": ("bit varying",),
}
"""Types whose values each type after them holds exactly: an ``ALTER COLUMN ... TYPE`` at the
source from one to the other is followed."""
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_MODIFIER = re.compile(r"\((\d+)(?:,(\d+))?\)")


def widened(target: str, source: str) -> str | None:
    """The type a target column of type ``target`` must take to hold values of the source's
    ``source`` type, when that holds more (``integer`` to ``bigint``, ``varchar(5)`` to
    ``text``, ``numeric(6,2)`` to ``numeric(12,4)``); None when the target's holds them already,
    or the change would narrow or convert it (then the target keeps its type, and a value that
    does not fit goes to the dead-letter topic with the reason)."""
    if target in (source, "text"):
        return None
    if target.endswith("[]") and source.endswith("[]"):
        element = widened(target[:-2], source[:-2])
        return None if element is None else element + "[]"
    target_base, source_base = _MODIFIER.sub("", target), _MODIFIER.sub("", source)
    held = _modifier(target)
    if target_base == source_base:
        wanted = _modifier(source)
        if held is None or (wanted is not None and _holds(held, wanted)):
            return None
        if wanted is None or _holds(wanted, held):
            return source
        return target_base  # neither holds the other: no modifier holds both
    if source_base not in _WIDER_BASES.get(target_base, ()):
        return None
    wanted = _modifier(source)
    digits = _INTEGER_DIGITS.get(target_base)
    if digits is not None and wanted is not None and wanted[0] - wanted[1] < digits:
        return source_base  # a numeric too narrow for the integers it must hold
    return source


def _modifier(type_name: str) -> tuple[int, int] | None:
    """``(precision, scale)`` of ``numeric(p,s)``, ``(n, 0)`` of ``varchar(n)``,
    ``timestamp(p)``...; None without a modifier."""
    found = _MODIFIER.search(type_name)
    return None if found is None else (int(found[1]), int(found[2] or 0))


def _holds(wide: tuple[int, int], narrow: tuple[int, int]) -> bool:
    """Whether values within modifier ``narrow`` fit within ``wide`` (integer digits, scale)."""
    return wide[0] - wide[1] >= narrow[0] - narrow[1] and wide[1] >= narrow[1]


def _column(name: str, pg_type: str, default: str | None) -> sql.Composable:
    """A column definition: ``default`` is the text of a value of ``pg_type``. A bytea's is
    its hex output (``\\x...``), as PostgreSQL prints it, not an event's bare hex digits."""
    column = sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))
    if default is None:
        return column
    return sql.SQL("{} DEFAULT {}::{}").format(column, sql.Literal(default), sql.SQL(pg_type))
