"""End to end: source -> connector -> Kafka -> PostgreSQL and SQLite sinks, tables equal.

Integration tests on the devstack. A seeded random workload over five tables (inserts, updates,
deletes, TOASTed text that later updates leave unchanged, a COPY, primary-key updates, a
truncate) runs while the pipeline runs; after quiescence every target table equals its source
table row for row (``_cdc_*`` columns aside). Three ways: one process; the sinks killed with
SIGKILL every few seconds; two sink processes in one group on topics of 4 partitions.
``CDC_TEST_E2E_OPS`` sets the workload's size (default 1500 transactions).
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from tests.support.decoding import FLOAT_TEXTS
from tests.support.harness import (
    CDC,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
)
from tests.support.sinks import Pipeline, assert_tables_equal, pg_rows, source_columns, sqlite_rows

CLIENTS = ["kafka-python", "confluent-kafka"]


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
) -> Any:
    """The pipeline, its sinks consuming with the client the test's parameter names."""
    client = getattr(request, "param", "kafka-python")
    p = Pipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique, consumer=client)
    yield p
    p.close()


@pytest.mark.parametrize("pipeline", CLIENTS, indirect=True)
def test_one_process_everything_equal(pipeline: Pipeline, unique: str) -> None:
    cdc = pipeline.start()
    try:
        wait_for(lambda: slot_confirmed_lsn(pipeline.source, pipeline.slot), 30, "the slot")
        pipeline.run_workload(int(unique, 16)).join()
        pipeline.settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert_tables_equal(pipeline.source, pipeline.replica, pipeline.lite)
    status = subprocess.run(
        [CDC, "status", "-c", str(pipeline.config)], capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stderr
    for sink in ("pg", "lite"):
        assert (
            f"OK    sink {sink}: group g-{pipeline.prefix}-{sink}: 6 topic(s), 6 partition(s),"
            " lag 0 record(s)" in status.stdout
        )
    # Stopped: its slot is not streaming, which `cdc status` warns about (exit 0 all the same).
    assert f"WARN  connector {pipeline.prefix}: slot {pipeline.slot} not streaming" in status.stdout


@pytest.mark.parametrize(
    "keys",
    [
        "schemas = true\n",
        # Debezium's precise decimals drop an unconstrained numeric's trailing zeros (its
        # loss, docs/encodings.md): the string mode keeps accounts.balance's text.
        'values = "debezium"\nskipped_operations = "none"\ndecimal_handling_mode = "string"\n',
        'values = "debezium"\nskipped_operations = "none"\nschemas = true\n'
        'decimal_handling_mode = "string"\n',
    ],
)
def test_every_values_mode_ends_equal(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str, keys: str
) -> None:
    """The workload through the snapshot and the stream in a values mode other than the
    default: both sinks read it back to the source's values."""
    p = Pipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique, snapshot="initial",
                 consumer="confluent-kafka", connector_keys=keys)  # fmt: skip
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO items (id, v, by, ts, arr)"
                " VALUES (-1, 'read', '\\xdeadbeef', '2024-01-02 03:04:05.5+02', '{1,NULL}')"
            )
        cdc = p.start()
        try:
            wait_for(lambda: slot_confirmed_lsn(p.source, p.slot), 30, "the slot")
            p.run_workload(int(unique, 16)).join()
            p.settle()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        assert_tables_equal(p.source, p.replica, p.lite)
        (first, *_) = read_topics(kafka_bootstrap, [f"{p.prefix}.public.items"])
        assert first.value is not None
        assert ("schema" in first.value) == ("schemas" in keys)  # JsonConverter's layout
    finally:
        p.close()


@pytest.mark.parametrize("pipeline", CLIENTS, indirect=True)
def test_sinks_killed_every_few_seconds(pipeline: Pipeline, unique: str) -> None:
    connector = pipeline.start("--connector", pipeline.prefix)
    sinks = pipeline.start("--sink", "pg", "--sink", "lite")
    rng = random.Random(unique)
    kills = 0
    try:
        wait_for(lambda: slot_confirmed_lsn(pipeline.source, pipeline.slot), 30, "the slot")
        work = pipeline.run_workload(int(unique, 16))
        while work.is_alive() or kills < 3:
            time.sleep(rng.uniform(2, 6))
            sinks.kill()
            kills += 1
            sinks = pipeline.start("--sink", "pg", "--sink", "lite")
        pipeline.settle()
    finally:
        assert sinks.stop() == 0, sinks.output()[-3000:]
        assert connector.stop() == 0, connector.output()[-3000:]
    assert kills >= 3
    assert_tables_equal(pipeline.source, pipeline.replica, pipeline.lite)


@pytest.mark.parametrize("client", CLIENTS)
def test_two_sink_processes_share_four_partitions(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str, client: str
) -> None:
    pipeline = Pipeline(
        tmp_path, pg_dsn, database, kafka_bootstrap, unique, partitions=4, consumer=client
    )
    connector = pipeline.start("--connector", pipeline.prefix)
    a = pipeline.start("--sink", "pg", "--sink", "lite")
    b = pipeline.start("--sink", "pg", "--sink", "lite")
    try:
        wait_for(lambda: slot_confirmed_lsn(pipeline.source, pipeline.slot), 30, "the slot")
        pipeline.run_workload(int(unique, 16)).join()
        pipeline.settle()
        for process in (a, b, connector):
            assert process.stop() == 0, process.output()[-3000:]
        assert "positioned" in a.output()
        assert "positioned" in b.output()
        assert_tables_equal(pipeline.source, pipeline.replica, pipeline.lite)
    finally:
        for process in (a, b, connector):
            if process.alive():
                process.kill()
        pipeline.close()


@pytest.mark.parametrize("pipeline", CLIENTS, indirect=True)
def test_target_database_outage_is_retried_never_skipped(pipeline: Pipeline, unique: str) -> None:
    cdc = pipeline.start()
    try:
        wait_for(lambda: slot_confirmed_lsn(pipeline.source, pipeline.slot), 30, "the slot")
        work = pipeline.run_workload(int(unique, 16))
        replica = sql.Identifier(pipeline.replica_name)
        with psycopg.connect(pipeline.pg_dsn, autocommit=True) as admin:
            time.sleep(3)
            # The target refuses new connections and loses the ones it has, for a while.
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(replica))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE 'cdc-sink-%%'",
                (pipeline.replica_name,),
            )
            # A change made during the outage must reach the sink while the target is down,
            # whether or not the workload is still running.
            with psycopg.connect(pipeline.source, autocommit=True) as source:
                source.execute('INSERT INTO log (payload) VALUES (\'{"during": "outage"}\')')
            wait_for(
                lambda: any(
                    "sink pg:" in line and "retrying" in line for line in cdc.output().splitlines()
                ),
                60,
                "the PostgreSQL sink to retry",
            )
            time.sleep(2)
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(replica))
        work.join()
        pipeline.settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert_tables_equal(pipeline.source, pipeline.replica, pipeline.lite)


FLOAT_SCHEMA = """
CREATE TABLE floats (id int PRIMARY KEY, r real, d double precision);
ALTER TABLE floats REPLICA IDENTITY FULL;
CREATE TABLE floats_bag (id int, r real, d double precision);
ALTER TABLE floats_bag REPLICA IDENTITY FULL;
"""
"""``floats_bag`` has no primary key: its rows are their own keys, its targets multisets."""
FLOAT_ROWS = [(text, None) if t == "real" else (None, text) for t, text in FLOAT_TEXTS] + [
    (s, s) for s in ("NaN", "Infinity", "-Infinity")
]
"""``(r, d)`` as PostgreSQL's text: signed zeros, integral values, both types' extremes, and
the values JSON has no number for."""
STREAMED = 100
"""Rows ``1..`` are in the table before the connector starts (snapshot reads); rows
``STREAMED + 1..`` hold the same values and are inserted while it streams."""


def float_json(row_id: int, r: str | None, d: str | None, wal2json: bool) -> bytes:
    """The image every producer must write for a row of ``floats``, from PostgreSQL's text."""

    def value(text: str | None) -> Any:
        if text is None or (wal2json and text in ("NaN", "Infinity", "-Infinity")):
            return None  # wal2json 2.5 writes null for these (documented)
        return text if text in ("NaN", "Infinity", "-Infinity") else float(text)

    return orjson.dumps({"id": row_id, "r": value(r), "d": value(d)})


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_floats_keep_their_value_and_sign_from_source_to_targets(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    """The same value is the same JSON text from snapshot reads and the stream of either plugin,
    and both sinks hold the source's value and sign (PostgreSQL: the same text; SQLite: the same
    double)."""
    p = Pipeline(
        tmp_path, pg_dsn, database, kafka_bootstrap, unique,
        schema=FLOAT_SCHEMA, tables=2, plugin=plugin, snapshot="initial",
    )  # fmt: skip
    wal2json = plugin == "wal2json"
    inserts = "INSERT INTO {} VALUES (%s, %s::real, %s::float8)"
    tables = ("floats", "floats_bag")
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            for table in tables:
                for i, (r, d) in enumerate(FLOAT_ROWS, 1):
                    conn.execute(sql.SQL(inserts).format(sql.Identifier(table)), (i, r, d))
        cdc = p.start()
        try:
            wait_for(lambda: slot_confirmed_lsn(p.source, p.slot), 60, "the slot")
            with psycopg.connect(database, autocommit=True) as conn:
                for table in tables:
                    ident = sql.Identifier(table)
                    for i, (r, d) in enumerate(FLOAT_ROWS, STREAMED + 1):
                        if not (wal2json and r in ("NaN", "Infinity", "-Infinity")):
                            # (wal2json would make them nulls)
                            conn.execute(sql.SQL(inserts).format(ident), (i, r, d))
                    # Zeros change sign (updates whose before images hold them too; without a
                    # key, a delete and a create), and rows go.
                    conn.execute(
                        sql.SQL("UPDATE {} SET r = -r, d = -d WHERE r = 0 OR d = 0").format(ident)
                    )
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE d = '5e-324' OR r = '1e-45'").format(ident)
                    )
            p.settle()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]

        events = read_topics(kafka_bootstrap, [f"{p.prefix}.public.floats"])
        first: dict[int, Any] = {}
        for e in events:
            if e.value is not None:
                first.setdefault(e.key["id"], e.value)
        for i, (r, d) in enumerate(FLOAT_ROWS, 1):
            read = first[i]
            assert read["op"] == "r"
            assert orjson.dumps(read["after"]) == float_json(i, r, d, wal2json=False)
            if STREAMED + i in first:
                created = first[STREAMED + i]
                assert created["op"] == "c"
                assert orjson.dumps(created["after"]) == float_json(STREAMED + i, r, d, wal2json)
        # The zeros' updates (before images under FULL identity) and the deletes.
        rows = {i: row for i, row in enumerate(FLOAT_ROWS, 1)}
        rows |= {STREAMED + i: row for i, row in rows.items()}
        changed = [e for e in events if e.op in ("u", "d")]
        assert [e.op for e in changed].count("u") == 4 * 2
        assert [e.op for e in changed].count("d") == 2 * 2
        for e in changed:
            assert e.value is not None
            r, d = rows[e.key["id"]]
            assert orjson.dumps(e.value["before"]) == float_json(e.key["id"], r, d, wal2json)
            if e.op == "u":
                r, d = (None if t is None else "0" if t == "-0" else "-0" for t in (r, d))
                assert orjson.dumps(e.value["after"]) == float_json(e.key["id"], r, d, wal2json)

        for table in tables:
            columns, types = source_columns(p.source, table)
            want = pg_rows(p.source, table, columns, "id, r, d")
            assert len(want) == 2 * len(FLOAT_ROWS) - 2 * 2 - (3 if wal2json else 0)
            assert "-0" in {r for row in want for r in row}
            # "-0" is not "0"
            assert pg_rows(p.replica, table, columns, "id, r, d") == want, table
            got = sqlite_rows(p.lite, table, columns, types, "id")
            for row in want:  # SQLite's doubles by repr, which shows a zero's sign; NaN: text
                for c in (1, 2):
                    text = row[c]
                    if text is not None and text not in ("NaN", "Infinity", "-Infinity"):
                        row[c] = repr(float(text))
            assert got == want, table
    finally:
        p.close()
