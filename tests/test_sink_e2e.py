"""End to end: source -> connector -> Kafka -> PostgreSQL and SQLite sinks, tables equal.

Integration tests on the devstack. A seeded random workload over five tables (inserts, updates,
deletes, TOASTed text that later updates leave unchanged, a COPY, primary-key updates, a
truncate) runs while the pipeline runs; after quiescence every target table equals its source
table row for row (``_cdc_*`` columns aside). Three ways: one process; the sinks killed with
SIGKILL every few seconds; two sink processes in one group on topics of 4 partitions.
``CDC_TEST_E2E_OPS`` sets the workload's size (default 1500 transactions).
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from cdc.kafka import LeaderUnknown
from tests.conftest import drop_database
from tests.harness import (
    CDC,
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    topic_ends,
    wait_for,
)
from tests.test_wal2json_decoder import FLOAT_TEXTS

OPS = int(os.environ.get("CDC_TEST_E2E_OPS", "1500"))

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
    id bigint PRIMARY KEY, v text, n numeric(20, 4), f float8, b bool, j jsonb, js json,
    by bytea, u uuid, ts timestamptz, d date, arr int[], m mood, big text);
ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL);
CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
CREATE TABLE bulk (id bigint PRIMARY KEY, v text);
CREATE TABLE log (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), payload jsonb);
CREATE TABLE bag (a int, b text);
ALTER TABLE bag REPLICA IDENTITY FULL;
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 20) g;
"""
TABLES = {
    "items": "id",
    "accounts": "id",
    "pairs": "a, b",
    "bulk": "id",
    "log": "id",
    "bag": "a, b",  # no primary key, REPLICA IDENTITY FULL: compared as a multiset
}


def workload(dsn: str, seed: int, ops: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(ops):
            if stop.is_set():
                return
            roll = rng.random()
            item = rng.randrange(1, 200)
            with conn.transaction():
                if roll < 0.35:
                    conn.execute(
                        "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                        " gen_random_uuid(), now(), current_date, %s, %s, %s)"
                        " ON CONFLICT (id) DO NOTHING",
                        (
                            item,
                            f"v{i}",
                            f"{rng.randrange(-(10**9), 10**9)}.{i % 10000:04d}",
                            rng.random() * 1e6,
                            rng.random() < 0.5,
                            orjson.dumps({"i": i, "x": [1, 2.5]}).decode(),
                            '{"raw":  [1,2]}',
                            bytes([i % 256, 0, 255]),
                            [i, None, -i],
                            rng.choice(["sad", "ok", "happy"]),
                            f"big{i}-" + "y" * 9000,
                        ),
                    )
                elif roll < 0.55:
                    # Leaves the TOASTed column alone: the source sends it as unavailable.
                    conn.execute(
                        "UPDATE items SET v = %s, n = n + 1 WHERE id = %s", (f"u{i}", item)
                    )
                elif roll < 0.6:
                    conn.execute(
                        "UPDATE items SET big = %s WHERE id = %s", (f"new{i}-" + "z" * 9000, item)
                    )
                elif roll < 0.68:
                    conn.execute("DELETE FROM items WHERE id = %s", (item,))
                elif roll < 0.72:
                    # A primary-key update.
                    conn.execute(
                        "UPDATE items SET id = %s WHERE id = %s AND NOT EXISTS"
                        " (SELECT 1 FROM items WHERE id = %s)",
                        (item + 1000, item, item + 1000),
                    )
                elif roll < 0.85:
                    for _ in range(rng.randrange(1, 8)):
                        a, b = rng.sample(range(1, 21), 2)
                        conn.execute(
                            "UPDATE accounts SET balance = balance - 1.25 WHERE id = %s", (a,)
                        )
                        conn.execute(
                            "UPDATE accounts SET balance = balance + 1.25 WHERE id = %s", (b,)
                        )
                elif roll < 0.95:
                    pa, pb = rng.randrange(1, 30), rng.choice(["x", "y", "z"])
                    conn.execute(
                        "INSERT INTO pairs VALUES (%s, %s, %s) ON CONFLICT (a, b) DO UPDATE"
                        " SET v = pairs.v + 1",
                        (pa, pb, i),
                    )
                    if rng.random() < 0.2:
                        conn.execute("DELETE FROM pairs WHERE a = %s", (pa,))
                elif roll < 0.97:
                    conn.execute(
                        "INSERT INTO log (payload) VALUES (%s)", (orjson.dumps({"i": i}).decode(),)
                    )
                else:
                    # Rows without a key, often equal: inserts, one-row deletes, updates.
                    ba, bb = rng.randrange(3), rng.choice(["p", "q"])
                    kind = rng.random()
                    if kind < 0.5:
                        conn.execute("INSERT INTO bag VALUES (%s, %s)", (ba, bb))
                    elif kind < 0.8:
                        conn.execute(
                            "DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE a = %s"
                            " AND b = %s LIMIT 1)",
                            (ba, bb),
                        )
                    else:
                        conn.execute(
                            "UPDATE bag SET a = a + 1 WHERE ctid = (SELECT ctid FROM bag"
                            " WHERE a = %s AND b = %s LIMIT 1)",
                            (ba, bb),
                        )
            if i == ops // 3:
                with conn.cursor().copy("COPY bulk (id, v) FROM STDIN") as copy:
                    for r in range(5000):
                        copy.write_row((r, f"bulk {r}"))
            if i == ops // 2:
                conn.execute("TRUNCATE log")
            time.sleep(0.001)


def pg_rows(dsn: str, table: str, columns: list[str], order: str) -> list[list[str | None]]:
    """Rows as the types' output functions print them."""
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.Identifier("public", table),
        sql.SQL(order),
    )
    with psycopg.connect(dsn) as conn:
        res = conn.pgconn.exec_(query.as_string(conn).encode())
        assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
        return [
            [
                None if (v := res.get_value(r, c)) is None else bytes(v).decode()
                for c in range(res.nfields)
            ]
            for r in range(res.ntuples)
        ]


def sqlite_rows(
    path: Path, table: str, columns: list[str], types: dict[str, str], order: str
) -> list[list[str | None]]:
    """SQLite's rows written the way PostgreSQL prints them, for comparison."""
    db = sqlite3.connect(path)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        rows = db.execute(f'SELECT {cols} FROM "public_{table}" ORDER BY {order}').fetchall()
    finally:
        db.close()

    def text(value: Any, column: str) -> str | None:
        if value is None:
            return None
        if types[column] == "boolean":
            return "t" if value else "f"
        if isinstance(value, bytes):
            return "\\x" + value.hex()
        if isinstance(value, float):
            return repr(value)
        return str(value)

    return [[text(v, c) for v, c in zip(row, columns, strict=True)] for row in rows]


def source_columns(dsn: str, table: str) -> tuple[list[str], dict[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (f"public.{table}",),
        ).fetchall()
    return [r[0] for r in rows], {r[0]: r[1] for r in rows}


def assert_tables_equal(
    source: str, replica: str, lite: Path, tables: dict[str, str] = TABLES
) -> None:
    """Every one of ``tables`` (name -> the ORDER BY that makes its rows comparable) equal in
    both sinks to the source, row for row."""
    for table, order in tables.items():
        columns, types = source_columns(source, table)
        want = pg_rows(source, table, columns, order)
        assert pg_rows(replica, table, columns, order) == want, f"postgres sink: {table}"
        got = sqlite_rows(lite, table, columns, types, order)
        floats = [i for i, c in enumerate(columns) if types[c] == "double precision"]
        for row in (*want, *got):
            for i in floats:  # same double, however printed
                value = row[i]
                row[i] = None if value is None else repr(float(value))
        assert got == want, f"sqlite sink: {table}"


def sinks_behind(
    kafka: str, dsn: str, lite: Path, prefix: str, tables: int = len(TABLES)
) -> list[str]:
    """What the sinks have not applied yet (empty when both hold the last record of every one
    of the ``tables`` topics)."""
    try:
        end = topic_ends(kafka, lambda t: t.startswith(prefix + ".") and not t.endswith(".dlq"))
    except LeaderUnknown as e:  # a topic created moments ago
        return [str(e)]
    with psycopg.connect(dsn) as conn:
        stored = {
            (t, p): o
            for t, p, o in conn.execute(
                "SELECT topic, partition, next_offset FROM cdc.offsets"
            ).fetchall()
        }
    db = sqlite3.connect(lite)
    try:
        stored_lite = {
            (t, p): o
            for t, p, o in db.execute(
                "SELECT topic, partition, next_offset FROM _cdc_offsets"
            ).fetchall()
        }
    except sqlite3.OperationalError as e:
        return [f"sqlite: {e}"]
    finally:
        db.close()
    behind = []
    if len({topic for topic, _ in end}) != tables:
        behind.append(f"topics so far: {sorted(topic for topic, _ in end)}")
    for (topic, partition), o in sorted(end.items()):
        for sink, offsets in (("pg", stored), ("lite", stored_lite)):
            if o and offsets.get((topic, partition), 0) < o:
                behind.append(
                    f"{sink} {topic}[{partition}] at {offsets.get((topic, partition))} of {o}"
                )
    return behind


class Pipeline:
    def __init__(
        self,
        tmp_path: Path,
        pg_dsn: str,
        database: str,
        kafka: str,
        unique: str,
        partitions: int = 1,
        consumer: str = "kafka-python",
        schema: str = SCHEMA,
        tables: int = len(TABLES),
        plugin: str = "wal2json",
        snapshot: str = "never",
    ) -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(schema)
        self.tables = tables
        self.replica_name = f"cdct_replica_{unique}"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.replica_name)))
        self.pg_dsn, self.source, self.kafka = pg_dsn, database, kafka
        self.replica = make_conninfo(pg_dsn, dbname=self.replica_name)
        self.lite = tmp_path / "replica.db"
        self.prefix = f"e2e{unique}"
        self.slot = f"cdc_{self.prefix}"
        self.config = tmp_path / "cdc.toml"
        self.config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka}"\n[kafka.topics]\npartitions = {partitions}\n'
            f'[kafka.consumer]\nclient = "{consumer}"\n'
            f'[[connectors]]\nname = "{self.prefix}"\ndsn = "{database}"\n'
            f'snapshot = "{snapshot}"\nplugin = "{plugin}"\n'
            f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{self.prefix}.public.*"]\n'
            f'dsn = "{self.replica}"\ngroup_id = "g-{self.prefix}-pg"\n'
            f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{self.prefix}.*"]\n'
            f'path = "{self.lite}"\ngroup_id = "g-{self.prefix}-lite"\n'
        )
        self.log = tmp_path / "cdc.log"
        self.processes: list[CdcProcess] = []

    def start(self, *args: str) -> CdcProcess:
        process = CdcProcess(self.config, self.log, *args)
        self.processes.append(process)
        return process

    def run_workload(self, seed: int) -> threading.Thread:
        self.stop = threading.Event()
        thread = threading.Thread(
            target=workload, args=(self.source, seed, OPS, self.stop), daemon=True
        )
        thread.start()
        return thread

    def settle(self) -> None:
        end = current_wal_lsn(self.source)
        wait_for(lambda: slot_confirmed_lsn(self.source, self.slot) >= end, 240, "the connector")
        deadline = time.monotonic() + 240
        while behind := sinks_behind(self.kafka, self.replica, self.lite, self.prefix, self.tables):
            died = [p for p in self.processes if p.proc.poll() not in (None, -9)]
            if time.monotonic() > deadline or died:
                tail = self.log.read_text(errors="replace")[-6000:]
                raise TimeoutError(
                    f"the sinks are behind ({len(died)} cdc process(es) exited): {behind}\n"
                    f"cdc's log ends:\n{tail}"
                )
            time.sleep(1)

    def close(self) -> None:
        drop_database(self.pg_dsn, self.replica_name)


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
            time.sleep(rng.uniform(3, 12))
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
