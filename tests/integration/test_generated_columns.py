"""Generated columns are left out of events everywhere, and targets that define them compute them.

PostgreSQL before 18 does not publish generated columns through pgoutput; wal2json prints them;
a snapshot's SELECT could read them. So events never carry them (snapshot, wal2json, pgoutput):
a target table the sink makes has no such column, and one the user made with the same
``GENERATED`` column computes it from the columns the events carry (PostgreSQL refuses a written
value). Integration test on the devstack, both plugins, a snapshot then streamed changes.
"""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import sql

from tests.support.harness import CDC, Event, read_topics, slot_confirmed_lsn, wait_for
from tests.support.replicas import Replicas, lite_table, pg_columns, pg_table

SOURCE = """
CREATE TABLE g (
    id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED, t text,
    tu text GENERATED ALWAYS AS (upper(t)) STORED);
CREATE TABLE bag (a int, b int GENERATED ALWAYS AS (a + 1) STORED);
ALTER TABLE bag REPLICA IDENTITY FULL;
INSERT INTO g (id, a, t) SELECT i, i, 'row ' || i FROM generate_series(1, 5) i;
INSERT INTO bag (a) VALUES (1), (2), (2);
"""
USER_TARGET = """
CREATE TABLE g (
    id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED, t text,
    tu text GENERATED ALWAYS AS (upper(t)) STORED,
    _cdc_lsn bigint NOT NULL, _cdc_index int NOT NULL);
"""
CHANGES = """
INSERT INTO g (id, a, t) SELECT i, i, 'row ' || i FROM generate_series(6, 9) i;
UPDATE g SET a = a + 100 WHERE id IN (1, 2, 6, 7);
UPDATE g SET t = 'changed' WHERE id IN (3, 8);
DELETE FROM g WHERE id IN (4, 9);
INSERT INTO bag (a) VALUES (3);
DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE a = 2 LIMIT 1);
UPDATE bag SET a = 10 WHERE a = 1;
"""


def incremental_reads(replicas: Replicas) -> list[Event]:
    events = read_topics(replicas.kafka, [f"{replicas.prefix}.public.g"])
    return [e for e in events if e.value and e.value["source"]["snapshot"] == "incremental"]


@pytest.mark.parametrize(
    "replicas",
    [("wal2json", ("pg", "user")), ("pgoutput", ("pg", "user"))],
    indirect=True,
    ids=["wal2json", "pgoutput"],
)
def test_generated_columns_left_out_of_events_and_computed_by_targets(
    replicas: Replicas,
) -> None:
    with psycopg.connect(replicas.source, autocommit=True) as conn:
        conn.execute(SOURCE)
        if replicas.plugin == "pgoutput" and conn.info.server_version >= 180000:
            # PostgreSQL 18 publishes them when asked: the decoder leaves them out then too.
            conn.execute(
                sql.SQL(
                    "CREATE PUBLICATION {} FOR ALL TABLES WITH (publish_generated_columns = stored)"
                ).format(sql.Identifier(replicas.slot))
            )
    with psycopg.connect(replicas.replicas["user"], autocommit=True) as conn:
        conn.execute(USER_TARGET)
    replicas.start()
    try:
        wait_for(lambda: slot_confirmed_lsn(replicas.source, replicas.slot), 60, "the slot")
        with psycopg.connect(replicas.source, autocommit=True) as conn:
            conn.execute(CHANGES)
        # An incremental snapshot reads the same columns as the initial one.
        command = [CDC, "snapshot", "-c", str(replicas.config), "--connector", replicas.prefix]
        asked = subprocess.run(
            [*command, "--table", "public.g"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert asked.returncode == 0, asked.stdout + asked.stderr
        wait_for(lambda: len(incremental_reads(replicas)) == 7, 60, "the incremental snapshot")
        replicas.settle()
    finally:
        replicas.stop()

    events = read_topics(replicas.kafka, [f"{replicas.prefix}.public.g"])
    events += read_topics(replicas.kafka, [f"{replicas.prefix}.public.bag"])
    assert {e.op for e in events} >= {"r", "c", "u", "d"}
    assert {e.value["source"]["snapshot"] for e in events if e.value} == {
        "true",
        "last",
        "false",
        "incremental",
    }
    for e in events:
        for image in (e.value or {}).get("before"), (e.value or {}).get("after"):
            assert image is None or not {"b", "tu"} & image.keys(), e
        assert b'"b"' not in e.headers.get("cdc-types", b""), e
    assert replicas.dead_letters() == {}

    source, pg, user = replicas.source, replicas.replicas["pg"], replicas.replicas["user"]
    # The sink's own targets: no generated column, the others equal to the source's.
    assert pg_columns(pg, "g") == ["id", "a", "t"]
    assert pg_table(pg, "g") == pg_table(source, "g", ["id", "a", "t"])
    assert pg_table(pg, "bag") == pg_table(source, "bag", ["a"])
    columns, key, rows = lite_table(replicas.lite, "g")
    assert (columns, key, rows) == (["id", "a", "t"], ["id"], pg_table(source, "g", columns))
    columns, _, rows = lite_table(replicas.lite, "bag")
    assert (columns, rows) == (["a"], pg_table(source, "bag", ["a"]))
    # The user's target computes them, exactly as the source did.
    assert pg_table(user, "g") == pg_table(source, "g")
    assert len(pg_table(user, "g")) == 7
