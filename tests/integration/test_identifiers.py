"""Awkward names through the whole pipeline: nothing a schema, table or column is called may
crash anything or mix one table's rows with another's.

Names with quotes, dots, ``%`` (which psycopg's client-side placeholder parser took for a
placeholder: the PostgreSQL sink crashed, and ``cdc run`` with it), ``$``, ``?``, spaces,
unicode, 63 bytes, reserved words, and names that differ only in case (SQLite's do not tell them
apart) or only in characters Kafka forbids (one topic). A keyed and a keyless (``REPLICA
IDENTITY FULL``) table among them; an initial snapshot, then inserts, updates and deletes,
through the connector (wal2json or pgoutput) and both sinks in one process. Both targets end
equal to the source, nothing in a DLQ, the process alive.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdc.events import topic_for
from cdc.sqltext import with_params
from connectors.postgres.catalog import split_name
from connectors.postgres.owntables import request_snapshot
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    slot_confirmed_lsn,
    topic_ends,
    wait_for,
)
from tests.support.services import drop_database
from tests.support.sinks import sinks_behind

LONG = "l" + "é" * 31  # 63 bytes: the longest name PostgreSQL keeps
assert len(LONG.encode()) == 63
SCHEMA = "we.ird \"s'ch%é$?"
TOAST = "t%oast"
"""A column whose values PostgreSQL stores out of line: an update that moves the key without
changing it makes the connector read it from the table (by the key's columns' names)."""

COLUMNS = {  # a column of each kind of awkward name, after the key
    "a%b": "text",
    "a%s": "text",
    "%%": "text",
    "$1": "text",
    "?": "text",
    "x.y": "text",
    "q\"uo'te": "text",
    "sp ace": "text",
    "é☃": "text",
    "select": "int",
    "order": "text",
    "user": "text",
    "ID": "int",  # the key is "id": SQLite takes them for one name
    LONG: "text",
    TOAST: "text",
}

# (schema, table, key column or None for REPLICA IDENTITY FULL, other columns)
TABLES: list[tuple[str, str, str | None, dict[str, str]]] = [
    ("public", "100%", "id", COLUMNS),
    (SCHEMA, "select", "order", {"v%": "text", "Order": "int"}),
    (SCHEMA, "a%b.c d", None, {"a%b": "text", "n": "int", "é☃": "text"}),
    ("public", "Users", "user", {"v": "text"}),
    ("public", "users", "user", {"v": "text"}),
    ("public", "a%b", "id", {"v": "text"}),
    ("public", "a_b", "id", {"v": "text"}),  # the same topic as a%b
    ("public", LONG, None, {"order": "text", "n": "int"}),
    ("public", "order", None, {"?": "text", "$1": "int"}),
]


def _create(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    for schema, table, key, columns in TABLES:
        parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()]
        if key is not None:
            parts.insert(0, sql.SQL("{} int PRIMARY KEY").format(sql.Identifier(key)))
        name = sql.Identifier(schema, table)
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(", ").join(parts)))
        if key is None:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(name))


def _write(conn: psycopg.Connection[tuple[object, ...]], rows: range, step: str) -> None:
    """Rows ``rows`` of every table: inserted (``insert``), changed (``update``: every column
    but the key, and a key moved), some deleted (``delete``)."""
    for schema, table, key, columns in TABLES:
        name = sql.Identifier(schema, table)
        names = ([key] if key else []) + list(columns)

        def value(column: str, n: int, kind: str, tag: str) -> object:
            if column == TOAST:
                return os.urandom(2500).hex()  # does not compress: stored out of line
            return n * 7 if kind == "int" else f"{tag}{n} %s %% $1 ? 'é☃\""

        types = {**({key: "int"} if key else {}), **columns}
        if step == "insert":
            query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                name,
                sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names)),
            )
            for n in rows:
                params = [n if c == key else value(c, n, types[c], "v") for c in names]
                conn.execute(with_params(query, conn), params)
                if key is None and n % 3 == 0:  # a keyless table holds equal rows
                    conn.execute(with_params(query, conn), params)
        elif step == "update":
            others = [c for c in names if c != key]
            # A keyless table's rows are picked by their int column, which updates keep.
            pick = sql.Identifier(key or next(c for c in columns if columns[c] == "int"))
            sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in others)
            for n in rows[::2]:
                conn.execute(
                    with_params(
                        sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(name, sets, pick), conn
                    ),
                    [value(c, n, types[c], "u") for c in others] + [n if key else n * 7],
                )
            if key:  # a key that moves: a delete and an insert at the sinks
                conn.execute(
                    with_params(
                        sql.SQL("UPDATE {} SET {} = {} + 1000 WHERE {} = %s").format(
                            name, pick, pick, pick
                        ),
                        conn,
                    ),
                    [rows[1]],
                )
        elif step == "delete":
            pick = sql.Identifier(key or next(c for c in columns if columns[c] == "int"))
            for n in rows[::3]:
                if key:
                    conn.execute(
                        with_params(
                            sql.SQL("DELETE FROM {} WHERE {} = %s").format(name, pick),
                            conn,
                        ),
                        [n],
                    )
                else:  # one of equal rows: by its ctid
                    conn.execute(
                        with_params(
                            sql.SQL(
                                "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t}"
                                " WHERE {c} = %s LIMIT 1)"
                            ).format(t=name, c=pick),
                            conn,
                        ),
                        [n * 7],
                    )


def _source_rows(dsn: str, schema: str, table: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """The source table's columns and its rows as text, sorted."""
    with psycopg.connect(dsn) as conn:
        columns = [
            str(r[0])
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped ORDER BY attnum",
                (sql.Identifier(schema, table).as_string(conn),),
            )
        ]
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(schema, table),
            )
        ).fetchall()
    return columns, sorted(tuple(map(str, r)) for r in rows)


def _target_rows(dsn: str, schema: str, table: str, columns: list[str]) -> list[tuple[str, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(schema, table),
            )
        ).fetchall()
    return sorted(tuple(map(str, r)) for r in rows)


def _snapshots_running(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM cdc.snapshots WHERE kind = 'incremental' AND state <> 'done'"
        ).fetchone()
    return row is None or row[0] > 0


def _sqlite_name(held: list[str], name: str) -> str:
    """Where the SQLite sink stores ``name``: under it, or, when that was taken in another
    case, under it with its hash's suffix."""
    return name if name in held else f"{name}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _sqlite_rows(path: Path, schema: str, table: str, columns: list[str]) -> list[tuple[str, ...]]:
    db = sqlite3.connect(path)
    try:
        tables = [str(r[0]) for r in db.execute("SELECT name FROM sqlite_schema")]
        name = _sqlite_name(tables, f"{schema}_{table}")
        held = [str(r[1]) for r in db.execute(f"PRAGMA table_info({_quote(name)})")]
        cols = ", ".join(_quote(_sqlite_name(held, c)) for c in columns)
        rows = db.execute(f"SELECT {cols} FROM {_quote(name)}").fetchall()
    finally:
        db.close()
    return sorted(tuple(map(str, r)) for r in rows)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.timeout(180)
@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_awkward_names_through_both_sinks(
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    plugin: str,
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        _create(conn)
        _write(conn, range(1, 13), "insert")
    replica_name = f"cdct_replica_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(replica_name)))
    replica = make_conninfo(pg_dsn, dbname=replica_name)
    lite = tmp_path / "replica.db"
    prefix = f"id{unique}"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{database}"\nplugin = "{plugin}"\n'
        "snapshot_chunk_rows = 5\n"
        f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{prefix}.*"]\n'
        f'dsn = "{replica}"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{prefix}.*"]\n'
        f'path = "{lite}"\n'
    )
    topics = len(TABLES) - 1  # a%b and a_b share one
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:

        def settled() -> None:
            end = current_wal_lsn(database)
            wait_for(
                lambda: not cdc.alive() or slot_confirmed_lsn(database, f"cdc_{prefix}") >= end,
                60,
                "the connector",
            )
            wait_for(
                lambda: (
                    not cdc.alive()
                    or not sinks_behind(kafka_bootstrap, replica, lite, prefix, topics)
                ),
                60,
                "the sinks",
                interval_s=0.5,
            )
            wait_for(lambda: not cdc.alive() or not _snapshots_running(database), 60, "snapshots")
            assert cdc.alive(), cdc.output()[-3000:]

        settled()  # the snapshot
        with psycopg.connect(database, autocommit=True) as conn:
            _write(conn, range(13, 25), "insert")
            _write(conn, range(1, 25), "update")
            _write(conn, range(1, 25), "delete")
        settled()
        with psycopg.connect(database, autocommit=True) as conn:
            # Read again in chunks of 5 rows: every chunk after the first starts after a key.
            request_snapshot(conn, prefix, ["public.100%", f"{SCHEMA}.select"])
        settled()
        for schema, table, _, _ in TABLES:
            columns, want = _source_rows(database, schema, table)
            assert want, (schema, table)
            assert _target_rows(replica, schema, table, columns) == want, ("pg", schema, table)
            assert _sqlite_rows(lite, schema, table, columns) == want, ("lite", schema, table)
        with psycopg.connect(replica) as conn:  # keyless: its rows found by their hash
            indexed = conn.execute(
                "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
                (sql.Identifier("public", LONG).as_string(conn),),
            ).fetchone()
        assert indexed == (2,), indexed  # (_cdc_lsn, _cdc_index) and _cdc_row
        dlq = topic_ends(
            kafka_bootstrap, lambda t: t.startswith(prefix + ".") and t.endswith(".dlq")
        )
        assert not any(dlq.values()), dlq
        assert cdc.alive(), cdc.output()[-3000:]
        assert "incremental snapshot of public.100% requested" in cdc.output()
        assert f"incremental snapshot of {SCHEMA}.select requested" in cdc.output()
        assert "tables public.a%b and public.a_b share topic" in cdc.output() or (
            "tables public.a_b and public.a%b share topic" in cdc.output()
        )
    finally:
        status = cdc.stop()
        drop_database(pg_dsn, replica_name)
    assert status == 0, cdc.output()[-3000:]


def test_split_name_finds_the_table_whose_names_hold_dots() -> None:
    tables = {("a.b", "c"), ("x", "y.z")}
    exists = lambda s, t: (s, t) in tables  # noqa: E731
    assert split_name("a.b.c", exists) == ("a.b", "c")
    assert split_name("x.y.z", exists) == ("x", "y.z")
    assert split_name("p.q.r", exists) == ("p", "q.r")  # none: the first dot, as before
    assert split_name("orders", exists) == ("public", "orders")


def test_tables_sharing_a_topic_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert topic_for("u1x", "public", "a%b") == topic_for("u1x", "public", "a_b")
    assert "tables public.a%b and public.a_b share topic u1x.public.a_b" in caplog.text
    assert topic_for("u1x", "public", "Users") != topic_for("u1x", "public", "users")
