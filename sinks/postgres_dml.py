"""The PostgreSQL sink's statements: a :class:`~cdc.sink.plan.TablePlan` turned into SQL.

Each group of rows travels as one JSON parameter per statement (:data:`ROWS`) and is applied
with set-based SQL guarded by the row's source version (``_cdc_lsn``, ``_cdc_index``): a row
only ever moves forward. Deletes leave a marker in ``cdc.deletes`` so that an older event
arriving later cannot bring the row back; truncates leave one in ``cdc.truncates``. A statement
is rendered once per table and kind (:func:`statement`).
"""

from __future__ import annotations

__all__ = [
    "ROWS",
    "VERSION_COLUMNS",
    "apply_whole_rows",
    "delete",
    "insert_keyless",
    "statement",
    "truncate",
    "truncated_at",
    "upsert",
]

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql

from cdc.records import SinkEvent, Version, by_shape
from cdc.sink.plan import FLOAT_TYPES, WholeRow, rows_json
from cdc.sqltext import TypeName, with_params
from sinks.postgres_ddl import Table

Connection = psycopg.Connection[Any]
VERSION_COLUMNS = ("_cdc_lsn", "_cdc_index")
ROWS = sql.SQL(
    "(SELECT e->0 AS _key, (e->>1)::bigint AS _lsn, (e->>2)::int AS _idx, e->3 AS _after"
    " FROM jsonb_array_elements(%s::jsonb) AS e)"
)
"""A batch's rows ``s(_key, _lsn, _idx, _after)``, from :func:`~cdc.sink.plan.rows_json`.
The planner takes it for 100 rows whatever its size, which keeps the joins with the target
per-row index probes."""


def truncated_at(conn: Connection, label: str) -> Version:
    row = conn.execute("SELECT lsn, idx FROM cdc.truncates WHERE target = %s", (label,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def truncate(conn: Connection, target: Table, version: Version) -> None:
    conn.execute(
        statement(
            conn,
            target,
            ("truncate",),
            lambda: sql.SQL("DELETE FROM {} WHERE (_cdc_lsn, _cdc_index) < (%s, %s)").format(
                target.ident
            ),
        ),
        version,
    )
    conn.execute(
        "INSERT INTO cdc.truncates AS t (target, lsn, idx) VALUES (%s, %s, %s)"
        " ON CONFLICT (target) DO UPDATE SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx"
        " WHERE (t.lsn, t.idx) < (EXCLUDED.lsn, EXCLUDED.idx)",
        (target.label, *version),
    )
    conn.execute(
        "DELETE FROM cdc.deletes WHERE target = %s AND (lsn, idx) < (%s, %s)",
        (target.label, *version),
    )


def statement(
    conn: Connection,
    target: Table,
    kind: tuple[Any, ...],
    make: Callable[[], sql.Composable],
    params: bool = True,
) -> bytes:
    """``make()``'s SQL, rendered once per table and ``kind`` for an execute with
    parameters (:func:`~cdc.sqltext.with_params`) or, if not ``params``, without."""
    query = target.statements.get(kind)
    if query is None:
        made = make()
        query = with_params(made, conn) if params else made.as_bytes(conn)
        target.statements[kind] = query
    return query


def delete(conn: Connection, target: Table, deletes: Sequence[SinkEvent]) -> None:
    key = target.key or tuple(deletes[0].key or ())
    rows = rows_json(deletes, key=True, image=False)

    def make() -> sql.Composable:
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{} = {}").format(
                sql.Identifier(k), _from_image(k, target.columns[k], image="_key")
            )
            for k in key
        )
        return sql.SQL(
            "DELETE FROM {tgt} t USING {rows} s WHERE {match}"
            " AND (t._cdc_lsn, t._cdc_index) < (s._lsn, s._idx)"
        ).format(tgt=target.ident, rows=ROWS, match=match)

    conn.execute(statement(conn, target, ("delete", key), make), (rows,))
    conn.execute(
        statement(
            conn,
            target,
            ("mark",),
            lambda: sql.SQL(
                "INSERT INTO cdc.deletes AS d (target, key, lsn, idx)"
                " SELECT %s, s._key, s._lsn, s._idx FROM {rows} s"
                " ON CONFLICT (target, key) DO UPDATE"
                " SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx"
                " WHERE (d.lsn, d.idx) < (EXCLUDED.lsn, EXCLUDED.idx)"
            ).format(rows=ROWS),
        ),
        (target.label, rows),
    )


def upsert(
    conn: Connection,
    target: Table,
    columns: tuple[str, ...],
    unavailable: frozenset[str],
    rows: str,
) -> None:
    """Upsert ``rows`` (:func:`~cdc.sink.plan.rows_json` of events that carry ``columns``)."""

    def make() -> sql.Composable:
        # Columns the target does not hold were dropped since (dropped_columns = "drop").
        written = [c for c in columns if c not in unavailable and c in target.columns]
        cols, values = _columns_and_values(target, written)
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in [*written, *VERSION_COLUMNS]
        )
        # OFFSET 0 keeps the delete-marker check a per-row index probe: joined, the planner
        # hashed all of cdc.deletes for every batch, a cost growing with every delete.
        return sql.SQL(
            "INSERT INTO {tgt} AS t ({cols}) SELECT {values} FROM {rows} s"
            " WHERE NOT EXISTS (SELECT 1 FROM cdc.deletes d WHERE d.target = %s"
            " AND d.key = s._key AND (d.lsn, d.idx) >= (s._lsn, s._idx) OFFSET 0)"
            " ON CONFLICT ({key}) DO UPDATE SET {updates}"
            " WHERE (t._cdc_lsn, t._cdc_index) < (EXCLUDED._cdc_lsn, EXCLUDED._cdc_index)"
        ).format(
            tgt=target.ident,
            cols=cols,
            values=values,
            rows=ROWS,
            key=sql.SQL(", ").join(map(sql.Identifier, target.key)),
            updates=updates,
        )

    query = statement(conn, target, ("upsert", columns, unavailable), make)
    conn.execute(query, (rows, target.label))


def apply_whole_rows(conn: Connection, target: Table, changes: Sequence[WholeRow]) -> None:
    """A table whose key is the whole row is a multiset: each event counts once (the
    ``cdc.applied`` ledger), a delete removes one equal row, and a delete that arrives before
    its insert leaves a debt that the insert pays instead of inserting."""
    for change in changes:
        e, image, digest = change.event, change.image, change.digest
        first = conn.execute(
            "INSERT INTO cdc.applied (target, lsn, idx) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (target.label, *e.version),
        ).rowcount
        if not first:
            continue
        if not change.insert:
            deleted = conn.execute(
                statement(
                    conn,
                    target,
                    ("delete row",),
                    lambda: sql.SQL(
                        "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE _cdc_row = %s"
                        " LIMIT 1)"
                    ).format(t=target.ident),
                ),
                (digest,),
            ).rowcount
            if not deleted:
                deleted = _delete_equal(conn, target, image)
            if not deleted:
                conn.execute(
                    "INSERT INTO cdc.debts AS d (target, row_hash, debt) VALUES (%s, %s, 1)"
                    " ON CONFLICT (target, row_hash) DO UPDATE SET debt = d.debt + 1",
                    (target.label, digest),
                )
            continue
        paid = conn.execute(
            "UPDATE cdc.debts SET debt = debt - 1 WHERE target = %s AND row_hash = %s AND debt > 0",
            (target.label, digest),
        ).rowcount
        if paid:
            continue
        columns = [c for c in image if c in target.columns]
        conn.execute(
            with_params(
                sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    target.ident,
                    sql.SQL(", ").join(
                        map(sql.Identifier, [*columns, *VERSION_COLUMNS, "_cdc_row"])
                    ),
                    sql.SQL(", ").join(
                        [sql.SQL("%s::{}").format(TypeName(target.columns[c])) for c in columns]
                        + [sql.SQL("%s")] * 3
                    ),
                ),
                conn,
            ),
            [*(_text(image[c], target.columns[c]) for c in columns), *e.version, digest],
        )


def _delete_equal(conn: Connection, target: Table, image: dict[str, Any]) -> int:
    """Delete one row equal to ``image`` on the columns both hold, compared as the target's
    types print them. For a row stored before a column was added or dropped: its content
    hash (``_cdc_row``) was made of the columns it had then, so the hash cannot find it."""
    columns = [c for c in image if c in target.columns]
    if not columns:
        return 0
    match = sql.SQL(" AND ").join(
        sql.SQL("{c}::text IS NOT DISTINCT FROM %s::{t}::text").format(
            c=sql.Identifier(c), t=TypeName(target.columns[c])
        )
        for c in columns
    )
    query = sql.SQL(
        "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {match} LIMIT 1)"
    ).format(t=target.ident, match=match)
    values = [_text(image[c], target.columns[c]) for c in columns]
    return conn.execute(with_params(query, conn), values).rowcount


def insert_keyless(conn: Connection, target: Table, events: Sequence[SinkEvent]) -> None:
    for carried_columns, _, group in by_shape(events):
        columns = tuple(c for c in carried_columns if c in target.columns)
        floats = any(target.columns[c] in FLOAT_TYPES for c in columns)
        rows = rows_json(group, key=False, image=True, floats=floats)

        def insert(columns: tuple[str, ...] = columns) -> sql.Composable:
            cols, values = _columns_and_values(target, columns)
            return sql.SQL(
                "INSERT INTO {tgt} ({cols}) SELECT {values} FROM {rows} s"
                " ON CONFLICT (_cdc_lsn, _cdc_index) DO NOTHING"
            ).format(tgt=target.ident, cols=cols, values=values, rows=ROWS)

        conn.execute(statement(conn, target, ("insert", columns), insert), (rows,))


def _columns_and_values(
    target: Table, columns: Sequence[str]
) -> tuple[sql.Composable, sql.Composable]:
    """The column list of an INSERT of ``columns`` and the version columns, and the values
    taken out of a batch row ``s`` (:data:`ROWS`) for them."""
    cols = sql.SQL(", ").join(map(sql.Identifier, [*columns, *VERSION_COLUMNS]))
    values = sql.SQL(", ").join(
        [_from_image(c, target.columns[c]) for c in columns] + [sql.SQL("s._lsn, s._idx")]
    )
    return cols, values


def _from_image(column: str, pg_type: str, image: str = "_after") -> sql.Composable:
    """SQL taking ``column`` out of a row's JSON image (``s._after`` or ``s._key``) as
    ``pg_type``: PostgreSQL's ``->>`` makes the text :func:`_text` would make in Python."""
    text = sql.SQL("(s.{} ->> {})").format(sql.Identifier(image), sql.Literal(column))
    if pg_type == "bytea":
        text = sql.SQL("('\\x' || {})").format(text)  # events carry bytea as bare hex digits
    return sql.SQL("{}::{}").format(text, TypeName(pg_type))


def _text(value: Any, pg_type: str) -> str | None:
    """An event's JSON value as the text PostgreSQL's input function for ``pg_type`` reads."""
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if pg_type == "bytea":
        return "\\x" + str(value)  # events carry bytea as bare hex digits
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
