"""Keys of tables renamed or dropped while the connector was behind come from the stream.

The connector is stopped; tables are changed, then renamed or dropped; the connector starts again
and decodes changes of tables that no longer exist under the names they had. Their events must
still carry their keys (pgoutput's relation message names the replica identity's columns; the
table's OID, which a rename keeps, gives the primary key's order), so the sinks' targets keep
their primary keys, hold the right rows, and nothing goes to a DLQ. Integration test on the
devstack, both plugins.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg
import pytest

from tests.support.harness import read_topics, slot_confirmed_lsn, wait_for
from tests.support.replicas import (
    Replicas,
    lite_table,
    pg_columns,
    pg_primary_key,
    pg_table,
)

SOURCE = """
CREATE TABLE r (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE o (a int, b text, v text, PRIMARY KEY (b, a));
CREATE TABLE d (id int PRIMARY KEY, v text);
CREATE TABLE f (id int PRIMARY KEY, v text);
ALTER TABLE f REPLICA IDENTITY FULL;
INSERT INTO r SELECT i, 'k' || i, 'r' || i FROM generate_series(1, 4) i;
INSERT INTO o SELECT i, 'k' || i, 'o' || i FROM generate_series(1, 4) i;
INSERT INTO d SELECT i, 'd' || i FROM generate_series(1, 4) i;
INSERT INTO f SELECT i, 'f' || i FROM generate_series(1, 4) i;
"""
WHILE_STOPPED = """
UPDATE r SET v = 'changed' WHERE a IN (1, 2);
DELETE FROM r WHERE a = 3;
INSERT INTO r VALUES (5, 'k5', 'new');
UPDATE o SET v = 'changed' WHERE a IN (1, 2);
DELETE FROM o WHERE a = 3;
UPDATE d SET v = 'changed' WHERE id IN (1, 2);
DELETE FROM d WHERE id = 3;
UPDATE f SET v = 'changed' WHERE id = 1;
DELETE FROM f WHERE id = 2;
CREATE TABLE n (id int PRIMARY KEY, v text);
INSERT INTO n SELECT i, 'n' || i FROM generate_series(1, 3) i;
UPDATE n SET v = 'changed' WHERE id = 1;
DELETE FROM n WHERE id = 2;
"""
KEYS = {"r": ["a", "b"], "o": ["b", "a"], "d": ["id"], "f": ["id"], "n": ["id"]}
GONE = """
ALTER TABLE r RENAME TO r2;
ALTER TABLE o RENAME TO o2;
DROP TABLE d;
ALTER TABLE f RENAME TO f2;
ALTER TABLE n RENAME TO n2;
"""


@pytest.mark.parametrize(
    "replicas",
    [("wal2json", ("pg",)), ("pgoutput", ("pg",))],
    indirect=True,
    ids=["wal2json", "pgoutput"],
)
def test_keys_of_tables_renamed_or_dropped_while_behind(replicas: Replicas) -> None:
    with psycopg.connect(replicas.source, autocommit=True) as conn:
        conn.execute(SOURCE)
    if replicas.plugin == "pgoutput":
        # Table n is made while the connector is stopped: a publication of the captured tables
        # (the default) gets it only at the next start, and pgoutput decodes nothing of it
        # before (its rows then come from the snapshot taken as it is added: see
        # test_publication). FOR ALL TABLES has it from its creation, as this test needs.
        text = replicas.config.read_text()
        replicas.config.write_text(
            text.replace(
                'snapshot = "initial"\n',
                'snapshot = "initial"\npublication_autocreate = "all_tables"\n',
                1,
            )
        )
    sinks = replicas.start("--sink", "pg", "--sink", "lite")
    connector = replicas.start("--connector", replicas.prefix)
    try:
        wait_for(lambda: slot_confirmed_lsn(replicas.source, replicas.slot), 60, "the slot")
        replicas.settle()
        assert connector.stop() == 0, connector.output()[-3000:]
        with psycopg.connect(replicas.source, autocommit=True) as conn:
            conn.execute(WHILE_STOPPED)
            expected = {t: pg_table(replicas.source, t) for t in KEYS}
            conn.execute(GONE)
        replicas.start("--connector", replicas.prefix)
        replicas.settle()
    finally:
        replicas.stop()
    assert not sinks.alive()

    for table, key in KEYS.items():
        events = read_topics(replicas.kafka, [f"{replicas.prefix}.public.{table}"])
        assert events, table
        for e in events:
            # The key's columns, in the primary key's order (its JSON picks the partition),
            # save where nothing says it: wal2json names them in the table's order, and a
            # session that starts after the rename cannot ask the catalog for "o"
            # (docs/operations.md).
            order = key
            if table == "o" and replicas.plugin == "wal2json" and e.op != "r":
                order = ["a", "b"]
            assert e.key is not None and list(e.key) == order, (table, e)
            image: dict[str, Any] | None = (e.value or {}).get("after") or (e.value or {}).get(
                "before"
            )
            if image is not None:
                assert e.key == {k: image[k] for k in key}, (table, e)
        assert not any(e.headers.get("cdc-identity") for e in events), table
    assert replicas.dead_letters() == {}

    pg = replicas.replicas["pg"]
    for table, key in KEYS.items():
        assert pg_primary_key(pg, table) == key, table
        assert pg_table(pg, table) == expected[table], table
        columns, lite_key, rows = lite_table(replicas.lite, table)
        assert columns == pg_columns(pg, table), table
        assert sorted(lite_key) == sorted(key), table
        assert rows == expected[table], table


@pytest.mark.parametrize(
    "replicas",
    [("wal2json", ("pg",)), ("pgoutput", ("pg",))],
    indirect=True,
    ids=["wal2json", "pgoutput"],
)
def test_full_identity_table_dropped_while_the_connector_lags(replicas: Replicas) -> None:
    """A REPLICA IDENTITY FULL table with a primary key: pgoutput's relation message does not
    say it has one. The session read it when it started; dropped before the session reaches its
    changes, it keeps its key."""
    with psycopg.connect(replicas.source, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE warm (id int PRIMARY KEY);"
            "CREATE TABLE f3 (id int PRIMARY KEY, v text);"
            "ALTER TABLE f3 REPLICA IDENTITY FULL;"
            "INSERT INTO f3 SELECT i, 'f' || i FROM generate_series(1, 4) i;"
        )
    cdc = replicas.start()
    try:
        wait_for(lambda: slot_confirmed_lsn(replicas.source, replicas.slot), 60, "the slot")
        with psycopg.connect(replicas.source, autocommit=True) as conn:
            conn.execute("INSERT INTO warm VALUES (1)")  # the session describes a first table
        replicas.settle()
        cdc.proc.send_signal(signal.SIGSTOP)  # behind from here on
        try:
            with psycopg.connect(replicas.source, autocommit=True) as conn:
                conn.execute("UPDATE f3 SET v = 'changed' WHERE id = 1")
                conn.execute("DELETE FROM f3 WHERE id = 2")
                expected = pg_table(replicas.source, "f3")
                conn.execute("DROP TABLE f3")
        finally:
            cdc.proc.send_signal(signal.SIGCONT)
        replicas.settle()
    finally:
        replicas.stop()

    events = read_topics(replicas.kafka, [f"{replicas.prefix}.public.f3"])
    assert {e.op for e in events} == {"r", "u", "d", None}
    for e in events:
        assert e.key is not None and list(e.key) == ["id"], e
        assert not e.headers.get("cdc-identity"), e
    assert replicas.dead_letters() == {}
    pg = replicas.replicas["pg"]
    assert pg_primary_key(pg, "f3") == ["id"]
    assert pg_table(pg, "f3") == expected
    assert lite_table(replicas.lite, "f3")[2] == expected
