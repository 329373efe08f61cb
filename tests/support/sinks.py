"""What the sink tests share: a source-to-sinks pipeline, reading target rows, DLQ counts."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from cdc.kafka import LeaderUnknown
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    slot_confirmed_lsn,
    topic_ends,
    wait_for,
)
from tests.support.services import drop_database

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
        connector_keys: str = "",
    ) -> None:
        """``connector_keys``: more TOML lines of the connector (``values = "debezium"``)."""
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
            f'snapshot = "{snapshot}"\nplugin = "{plugin}"\n{connector_keys}'
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


TYPES = orjson.dumps({"id": "bigint", "n": "numeric", "note": "text"})


def envelope(
    op: str, row: dict[str, object] | None, before: dict[str, object] | None = None
) -> bytes:
    return orjson.dumps(
        {
            "before": before,
            "after": row,
            "op": op,
            "ts_ms": 1,
            "source": {
                "connector": "postgresql",
                "name": "hand",
                "db": "x",
                "schema": "public",
                "table": "items",
                "lsn": 1,
                "txId": 1,
                "snapshot": "false",
            },
            "transaction": None,
        }
    )


def dlq_count(kafka: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        if topic not in consumer.topics():
            return 0
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()
