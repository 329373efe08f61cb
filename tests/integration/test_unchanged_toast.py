"""Unchanged TOASTed values under REPLICA IDENTITY FULL, end to end, on both plugins and sinks.

Integration test on the devstack. An update that leaves a TOASTed value unchanged does not log it
in the new row, but under REPLICA IDENTITY FULL the old row holds it whole: every event carries
the value (``after``, and the whole-row key of a table without a primary key), none names it in
``cdc-unavailable``, and both sinks end equal to the source, row for row and count for count, the
later deletes finding their rows. A table of default identity is there too: its key change whose
row moved on before the connector could read it back does carry the placeholder, which no sink
stores.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest

from cdc.events import UNAVAILABLE, UNAVAILABLE_HEADER
from tests.support.harness import read_topics, slot_confirmed_lsn, wait_for
from tests.support.sinks import Pipeline, assert_tables_equal

SCHEMA = """
CREATE TABLE doc (id int PRIMARY KEY, n int, body text);
ALTER TABLE doc REPLICA IDENTITY FULL;
CREATE TABLE bag_doc (n int, body text);
ALTER TABLE bag_doc REPLICA IDENTITY FULL;
CREATE TABLE plain_doc (id int PRIMARY KEY, n int, body text);
"""
TABLES = {"doc": "id", "bag_doc": "n, body", "plain_doc": "id"}
"""Each table and the order that makes its rows comparable (bag_doc's: as a multiset)."""


def body() -> str:
    """8 kB of random hex: too big to stay in the row and too random to compress under 2 kB."""
    return secrets.token_hex(4096)


def workload(dsn: str) -> None:
    a, b, c = body(), body(), body()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(1, 5):
            conn.execute("INSERT INTO doc VALUES (%s, %s, %s)", (i, i, body()))
        for i in range(1, 4):
            conn.execute("INSERT INTO plain_doc VALUES (%s, %s, %s)", (i, i, body()))
        # Two equal rows, and another.
        conn.execute("INSERT INTO bag_doc VALUES (1, %s), (1, %s), (2, %s)", (a, a, b))
        conn.execute("INSERT INTO bag_doc VALUES (3, %s)", (c,))
        # Another column changes, the TOASTed one does not.
        conn.execute("UPDATE doc SET n = n + 10")
        conn.execute("UPDATE bag_doc SET n = n + 10 WHERE n IN (1, 3)")
        conn.execute("UPDATE plain_doc SET n = n + 10 WHERE id = 3")
        # Key changes; the second row moves twice in one transaction, so it is gone from its
        # first new key when the connector could read it back.
        conn.execute("UPDATE doc SET id = 101 WHERE id = 1")
        with conn.transaction():
            conn.execute("UPDATE doc SET id = 102 WHERE id = 2")
            conn.execute("UPDATE doc SET id = 202 WHERE id = 102")
        with conn.transaction():
            conn.execute("UPDATE plain_doc SET id = 101 WHERE id = 1")
            conn.execute("UPDATE plain_doc SET id = 201 WHERE id = 101")
        # Deletes afterwards: each must find its row in the targets.
        conn.execute("DELETE FROM doc WHERE id IN (202, 3)")
        conn.execute(
            "DELETE FROM bag_doc WHERE ctid = (SELECT ctid FROM bag_doc WHERE n = 11 LIMIT 1)"
        )
        conn.execute("DELETE FROM bag_doc WHERE n = 13")
        conn.execute("UPDATE bag_doc SET n = 12 WHERE n = 11")  # the other twin: moved again
        conn.execute("DELETE FROM plain_doc WHERE id = 2")


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_full_identity_events_carry_the_value_and_sinks_end_equal(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    pipeline = Pipeline(
        tmp_path,
        pg_dsn,
        database,
        kafka_bootstrap,
        unique,
        schema=SCHEMA,
        tables=len(TABLES),
        plugin=plugin,
    )
    try:
        cdc = pipeline.start()
        try:
            wait_for(lambda: slot_confirmed_lsn(pipeline.source, pipeline.slot), 30, "the slot")
            workload(pipeline.source)
            pipeline.settle()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        assert_tables_equal(pipeline.source, pipeline.replica, pipeline.lite, TABLES)
        with psycopg.connect(pipeline.source) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM doc), (SELECT count(*) FROM bag_doc),"
                " (SELECT count(*) FROM plain_doc)"
            ).fetchone()
        assert counts == (2, 2, 2)  # the workload did what it says: 101, 4; 2, 12; 3, 201

        topics = [f"{pipeline.prefix}.public.{t}" for t in TABLES]
        events = [e for e in read_topics(kafka_bootstrap, topics) if e.value is not None]
        full = [e for e in events if not e.topic.endswith(".plain_doc")]
        for e in full:
            assert e.value is not None
            assert UNAVAILABLE_HEADER not in e.headers, e
            for image in (e.value["after"], e.value["before"], e.key):
                assert UNAVAILABLE not in (image or {}).values(), e
            if e.op in ("c", "u"):
                assert len(e.value["after"]["body"]) == 8192, e
        updates = [e for e in full if e.op == "u"]
        assert len(updates) == 4  # doc's n, the TOASTed body unchanged
        for e in updates:
            assert e.value is not None
            assert e.value["after"]["body"] == e.value["before"]["body"]
            assert e.value["after"]["n"] == e.value["before"]["n"] + 10
        # The default-identity table shows the WAL had no value: the placeholder, said so.
        plain = [e for e in events if e.topic.endswith(".plain_doc")]
        unavailable = [e for e in plain if UNAVAILABLE_HEADER in e.headers]
        assert [(e.op, e.key) for e in unavailable] == [("u", {"id": 3}), ("c", {"id": 101})]
        assert "stored as null" in cdc.output()  # that row 101's value, by the sinks, said so
    finally:
        pipeline.close()
