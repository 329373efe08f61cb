"""Schema changes while the pipeline runs: the sinks follow what they can, and end equal.

One table, the connector (wal2json or pgoutput) and both sinks in one process, rows written after
each step: columns added with and without a default (PostgreSQL does not rewrite the rows that
predate them, so no event says their value), types widened (``integer`` to ``bigint``,
``varchar(5)`` to ``text``, ``numeric(6,2)`` to ``numeric(12,4)``), columns dropped. At the end
both targets hold the source's rows on the source's columns, and nothing went to the DLQ.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdc.events import UNAVAILABLE
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
)
from tests.support.services import drop_database
from tests.support.sinks import dlq_count, pg_rows, sinks_behind, source_columns, sqlite_rows

STEPS = [
    # Added columns: rows 3..20 are never written again, so only the default tells their value.
    "ALTER TABLE t ADD COLUMN x int DEFAULT 42, ADD COLUMN y text DEFAULT 'it''s, \"q\"',"
    " ADD COLUMN z int, ADD COLUMN w bytea DEFAULT '\\x00ff', ADD COLUMN f boolean DEFAULT true",
    "INSERT INTO t (id, a, v, d, x) VALUES (100, 1, 'new', 1.5, 7)",
    "UPDATE t SET a = a + 1 WHERE id = 2",
    # Widened types: values that only the new type holds.
    "ALTER TABLE t ALTER COLUMN a TYPE bigint",
    "INSERT INTO t (id, a, v, d) VALUES (101, 1099511627776, 'big', 2.25)",
    "UPDATE t SET a = 2199023255552 WHERE id = 3",
    "ALTER TABLE t ALTER COLUMN v TYPE text",
    "INSERT INTO t (id, a, v, d) VALUES (102, 5, repeat('long', 30), 3.5)",
    "ALTER TABLE t ALTER COLUMN d TYPE numeric(12,4)",
    "INSERT INTO t (id, a, v, d) VALUES (103, 6, 'wide', 12345678.1234)",
    "UPDATE t SET d = 0.0001 WHERE id = 4",
    # A dropped column that cannot be an unchanged TOASTed value, then updates right after.
    "ALTER TABLE t DROP COLUMN z",
    "UPDATE t SET a = a + 10 WHERE id IN (5, 6)",
    "INSERT INTO t (id, a, v, d) VALUES (104, 7, 'after drop', 1)",
    "DELETE FROM t WHERE id = 7",
    # A renamed table: its events go to the new name's topic, which must hold all its rows.
    "ALTER TABLE u RENAME TO u2",
    "UPDATE u2 SET v = 'renamed' WHERE id = 1",
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
@pytest.mark.parametrize("while_down", [False, True], ids=["running", "down"])
def test_schema_changes_are_followed_by_both_sinks(
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    plugin: str,
    while_down: bool,
) -> None:
    """``down``: the connector is stopped while the steps run, so that when it reads their
    changes the catalog already shows the last step (the rewrite of ``ALTER TYPE`` took the added
    columns' defaults out of it): it reads the table again (an incremental snapshot)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, a int, v varchar(5), d numeric(6,2), body text)"
        )
        conn.execute(
            "INSERT INTO t SELECT g, g, 'v' || g, g + 0.5, 'b' || g FROM generate_series(1, 20) g"
        )
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO u SELECT g, 'u' || g FROM generate_series(1, 10) g")
    replica_name = f"cdct_replica_{unique}"
    prefix = f"sc{unique}"
    replica, lite, config = _pipeline(tmp_path, pg_dsn, replica_name)
    config.write_text(_config(prefix, database, plugin, kafka_bootstrap, replica, lite))
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        settle = _Settler(database, replica, lite, kafka_bootstrap, prefix, cdc)
        settle()  # the snapshot is applied: the targets exist before the first change
        if while_down:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        with psycopg.connect(database, autocommit=True) as conn:
            for step in STEPS:
                conn.execute(step)
        if while_down:
            cdc = settle.cdc = CdcProcess(config, tmp_path / "cdc.log")
        settle.topics = 3
        settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    try:
        columns, types = source_columns(database, "t")
        want = pg_rows(database, "t", columns, "id")
        assert pg_rows(replica, "t", columns, "id") == want
        got = sqlite_rows(lite, "t", columns, types, "id")
        # SQLite keeps a numeric's text as it came: rows the source's ALTER TYPE rewrote to
        # another scale (1.50 -> 1.5000) are equal in value, not in text.
        numeric = [i for i, c in enumerate(columns) if types[c] == "numeric"]
        for row in (*want, *got):
            for i in numeric:
                value = row[i]
                row[i] = None if value is None else str(Decimal(value).normalize())
        assert got == want
        assert dlq_count(kafka_bootstrap, f"{prefix}.public.t.dlq") == 0
        want = pg_rows(database, "u2", ["id", "v"], "id")
        assert len(want) == 10
        assert pg_rows(replica, "u2", ["id", "v"], "id") == want
        assert sqlite_rows(lite, "u2", ["id", "v"], {"id": "integer", "v": "text"}, "id") == want
        events = read_topics(kafka_bootstrap, [f"{prefix}.public.t"])
        after_drop = [e for e in events if e.value and e.value["after"] and e.key["id"] in (5, 6)]
        last = after_drop[-1].value
        assert last is not None and "z" not in last["after"], last
        assert UNAVAILABLE not in last["after"].values()
        assert "changed column a of public.t from integer to bigint" in cdc.output()
        if while_down:  # the types changed: values may have been rewritten; read it again
            assert "column a changed from integer to bigint" in cdc.output()
            assert ": reading it again" in cdc.output()
    finally:
        drop_database(pg_dsn, replica_name)


def _pipeline(tmp_path: Path, pg_dsn: str, replica_name: str) -> tuple[str, Path, Path]:
    """A replica database made for the test (the caller drops it): its DSN, the SQLite
    file's path and the config file's path."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(replica_name)))
    return (
        make_conninfo(pg_dsn, dbname=replica_name),
        tmp_path / "replica.db",
        tmp_path / "cdc.toml",
    )


def _config(
    prefix: str,
    database: str,
    plugin: str,
    kafka: str,
    replica: str,
    lite: Path,
    kafka_extra: str = "",
    sink: str = "",
) -> str:
    """One connector and both sinks on its topics; ``sink`` is added to each sink's table."""
    return (
        f'[kafka]\nbootstrap_servers = "{kafka}"\n{kafka_extra}'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{database}"\nplugin = "{plugin}"\n'
        f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{prefix}.public.*"]\n'
        f'dsn = "{replica}"\n{sink}'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{prefix}.public.*"]\n'
        f'path = "{lite}"\n{sink}'
    )


class _Settler:
    """Waits for the connector to reach the end of WAL, for any table it reads again to be
    read, and for both sinks to hold every record."""

    def __init__(
        self, source: str, replica: str, lite: Path, kafka: str, prefix: str, cdc: CdcProcess
    ) -> None:
        self.source, self.replica, self.lite = source, replica, lite
        self.kafka, self.prefix, self.cdc = kafka, prefix, cdc
        self.topics = 2

    def __call__(self) -> None:
        wait_for(self._read_again, 120, "the tables read again")
        wait_for(
            lambda: (
                self.cdc.alive()
                and not sinks_behind(self.kafka, self.replica, self.lite, self.prefix, self.topics)
            ),
            60,
            "the sinks",
            interval_s=0.5,
        )
        assert self.cdc.alive(), self.cdc.output()[-3000:]

    def _read_again(self) -> bool:
        end = current_wal_lsn(self.source)
        wait_for(
            lambda: slot_confirmed_lsn(self.source, f"cdc_{self.prefix}") >= end,
            60,
            "the connector",
        )
        with psycopg.connect(self.source) as conn:
            row = conn.execute(
                "SELECT count(*) FROM cdc.snapshots WHERE connector = %s"
                " AND kind = 'incremental' AND state <> 'done'",
                (self.prefix,),
            ).fetchone()
        return row is not None and row[0] == 0


DROP_STEPS = [
    [
        "ALTER TABLE k ADD COLUMN x int DEFAULT 42",
        "ALTER TABLE m ADD COLUMN x int DEFAULT 42",
        # Rows stored before the column was added: their content hash lacks it.
        "DELETE FROM m WHERE a = 1",
    ],
    [
        "ALTER TABLE k DROP COLUMN c",
        "ALTER TABLE m DROP COLUMN c",
        "UPDATE k SET a = a + 100 WHERE id IN (1, 2)",
        "INSERT INTO m VALUES (50, 'new', 7)",
        "DELETE FROM m WHERE a = 2",
        "UPDATE m SET b = 'upd' WHERE a = 4",
    ],
    [
        # A rename: the connector reads k again, which fills b2; b is gone from every row after.
        "ALTER TABLE k RENAME COLUMN b TO b2",
        "UPDATE k SET a = 0 WHERE id = 3",
    ],
    [
        # The dropped name added again: a new column, whose default rows that predate it hold.
        "ALTER TABLE k ADD COLUMN c text DEFAULT 'again'",
        "UPDATE k SET c = 'set' WHERE id = 4",
        "DELETE FROM m WHERE a = 5",
    ],
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_dropped_columns_kept_or_dropped(
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    plugin: str,
    mode: str,
) -> None:
    """``dropped_columns``: a keyed table and a keyless REPLICA IDENTITY FULL one (a multiset,
    rows found by their content) through added, dropped, renamed and re-added columns, on topics
    of three partitions. Both sinks end with the source's rows on the source's columns; with
    ``drop``, with exactly the source's columns."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE k (id int PRIMARY KEY, a int, b text, c text, body text)")
        conn.execute(
            "INSERT INTO k SELECT g, g, 'b' || g, 'c' || g, 'body' || g"
            " FROM generate_series(1, 20) g"
        )
        conn.execute("CREATE TABLE m (a int, b text, c text)")
        conn.execute("ALTER TABLE m REPLICA IDENTITY FULL")
        conn.execute(
            "INSERT INTO m SELECT g % 8, 'b' || (g % 8), 'c' || (g % 8)"
            " FROM generate_series(1, 12) g"
        )
    replica_name = f"cdct_replica_{unique}"
    prefix = f"dc{unique}"
    replica, lite, config = _pipeline(tmp_path, pg_dsn, replica_name)
    config.write_text(
        _config(
            prefix,
            database,
            plugin,
            kafka_bootstrap,
            replica,
            lite,
            kafka_extra="[kafka.topics]\npartitions = 3\n",
            sink=f'dropped_columns = "{mode}"\n',
        )
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        settle = _Settler(database, replica, lite, kafka_bootstrap, prefix, cdc)
        settle()
        for steps in DROP_STEPS:  # each read by the connector before the next is made
            with psycopg.connect(database, autocommit=True) as conn:
                for step in steps:
                    conn.execute(step)
            settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    try:
        for table, order in (("k", "id"), ("m", "a, b, x")):
            columns, types = source_columns(database, table)
            want = pg_rows(database, table, columns, order)
            assert pg_rows(replica, table, columns, order) == want, table
            assert sqlite_rows(lite, table, columns, types, order) == want, table
            held = set(source_columns(replica, table)[0]) - {"_cdc_lsn", "_cdc_index", "_cdc_row"}
            db = sqlite3.connect(lite)
            try:
                info = db.execute(f'PRAGMA table_info("public_{table}")').fetchall()
            finally:
                db.close()
            in_lite = {r[1] for r in info} - {"_cdc_lsn", "_cdc_index", "_cdc_row"}
            stale = {"k": {"b"}, "m": set()}[table] if mode == "keep" else set()
            if mode == "keep":  # c was dropped, then (on k) added again
                assert held == in_lite == set(columns) | stale | {"c"}, table
            else:
                assert held == in_lite == set(columns), table
            assert dlq_count(kafka_bootstrap, f"{prefix}.public.{table}.dlq") == 0
        if mode == "drop":
            for column in ("c", "b"):
                assert f"dropped column {column} of public.k: the source dropped it" in cdc.output()
                assert f"dropped column {column} of public_k: the source dropped it" in cdc.output()
    finally:
        drop_database(pg_dsn, replica_name)
