"""Snapshots that start over: every target ends equal to its source, keyless tables included.

A keyed table and a keyless ``REPLICA IDENTITY FULL`` table (equal rows on purpose), written to
all along; the connector is SIGKILLed at several points of its initial snapshot (after it
started, inside the keyless table, inside the keyed one), or restarted with ``snapshot =
"always"``; the PostgreSQL and SQLite sinks run in a process of their own. At the end both
targets hold the source's rows, count for count. ``CDC_TEST_SNAPSHOT_KILLS`` sets how many kills
(default 3; ``make test-full`` uses 8).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.harness import CdcProcess, current_wal_lsn, slot_confirmed_lsn, wait_for
from tests.support.services import drop_database
from tests.support.sinks import pg_rows, sinks_behind, source_columns, sqlite_rows

KILLS = int(os.environ.get("CDC_TEST_SNAPSHOT_KILLS", "3"))
KEYED_ROWS = 40_000
BAG_ROWS = 4_000

SCHEMA = f"""
CREATE TABLE keyed (id bigint PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE bag (a int, b text);
ALTER TABLE bag REPLICA IDENTITY FULL;
INSERT INTO keyed SELECT g, md5(g::text), 0 FROM generate_series(1, {KEYED_ROWS}) g;
INSERT INTO bag SELECT g % 500, 'b' || (g % 7) FROM generate_series(1, {BAG_ROWS}) g;
"""
TABLES = {"keyed": "id", "bag": "a, b"}
STARTED = "table(s) as of"
"""What the connector logs as each snapshot attempt starts reading."""


def writer(dsn: str, seed: int, stop: threading.Event) -> None:
    """Inserts, updates and deletes in both tables; the keyless table's touch one of several
    equal rows (by ``ctid``), so that counts matter."""
    rng = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            i += 1
            roll = rng.random()
            a = rng.randrange(500)
            one_of = "ctid = (SELECT ctid FROM bag WHERE a = %s LIMIT 1)"
            with conn.transaction():
                if roll < 0.3:
                    conn.execute(
                        "UPDATE keyed SET v = %s, n = %s WHERE id = %s",
                        (f"u{i}", i, rng.randrange(1, KEYED_ROWS)),
                    )
                elif roll < 0.4:
                    conn.execute("DELETE FROM keyed WHERE id = %s", (rng.randrange(1, KEYED_ROWS),))
                elif roll < 0.5:
                    conn.execute(
                        "INSERT INTO keyed VALUES (%s, %s, %s)", (KEYED_ROWS + i, "new", i)
                    )
                elif roll < 0.7:
                    conn.execute("INSERT INTO bag VALUES (%s, %s)", (a, f"b{rng.randrange(7)}"))
                elif roll < 0.85:
                    conn.execute(f"DELETE FROM bag WHERE {one_of}", (a,))
                else:
                    conn.execute(f"UPDATE bag SET b = %s WHERE {one_of}", (f"w{i % 5}", a))
            time.sleep(0.001)


class RestartPipeline:
    """The source, the connector in one process and both sinks in another."""

    def __init__(
        self, tmp_path: Path, pg_dsn: str, database: str, kafka: str, unique: str, mode: str
    ) -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute("ANALYZE")
        self.replica_name = f"cdct_replica_{unique}"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.replica_name)))
        self.pg_dsn, self.source, self.kafka = pg_dsn, database, kafka
        self.replica = make_conninfo(pg_dsn, dbname=self.replica_name)
        self.lite = tmp_path / "replica.db"
        self.prefix = f"rs{unique}"
        self.slot = f"cdc_{self.prefix}"
        self.config = tmp_path / "cdc.toml"
        self.config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka}"\n'
            f'[[connectors]]\nname = "{self.prefix}"\ndsn = "{database}"\nsnapshot = "{mode}"\n'
            f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{self.prefix}.public.*"]\n'
            f'dsn = "{self.replica}"\ngroup_id = "g-{self.prefix}-pg"\n'
            f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{self.prefix}.public.*"]\n'
            f'path = "{self.lite}"\ngroup_id = "g-{self.prefix}-lite"\n'
        )
        self.log = tmp_path / "connector.log"
        self.sinks = CdcProcess(
            self.config, tmp_path / "sinks.log", "--sink", "pg", "--sink", "lite"
        )
        self.stop = threading.Event()
        self.writes = threading.Thread(
            target=writer, args=(database, int(unique, 16), self.stop), daemon=True
        )
        self.counter = KafkaConsumer(bootstrap_servers=kafka)

    def connector(self) -> CdcProcess:
        return CdcProcess(self.config, self.log, "--connector", self.prefix)

    def attempts(self) -> int:
        return self.log.read_text(errors="replace").count(STARTED) if self.log.exists() else 0

    def published(self) -> int:
        """Records on the two tables' topics so far."""
        parts = [
            TopicPartition(topic, p)
            for topic in (f"{self.prefix}.public.{t}" for t in TABLES)
            for p in self.counter.partitions_for_topic(topic) or ()
        ]
        return sum(self.counter.end_offsets(parts).values()) if parts else 0

    def settle(self) -> None:
        self.stop.set()
        self.writes.join()
        end = current_wal_lsn(self.source)
        wait_for(lambda: slot_confirmed_lsn(self.source, self.slot) >= end, 240, "the connector")
        wait_for(
            lambda: not sinks_behind(self.kafka, self.replica, self.lite, self.prefix, len(TABLES)),
            300,
            "the sinks",
            interval_s=1,
        )

    def assert_equal(self) -> None:
        for table, order in TABLES.items():
            columns, types = source_columns(self.source, table)
            want = pg_rows(self.source, table, columns, order)
            got = pg_rows(self.replica, table, columns, order)
            lite = sqlite_rows(self.lite, table, columns, types, order)
            assert len(got) == len(want), f"postgres sink: {table}: {len(got)} rows for {len(want)}"
            assert got == want, f"postgres sink: {table}"
            assert len(lite) == len(want), f"sqlite sink: {table}: {len(lite)} rows for {len(want)}"
            assert Counter(map(tuple, lite)) == Counter(map(tuple, want)), f"sqlite sink: {table}"

    def close(self) -> None:
        self.stop.set()
        self.counter.close()
        if self.sinks.alive():
            self.sinks.kill()
        drop_database(self.pg_dsn, self.replica_name)


@pytest.fixture
def restarts(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
) -> Any:
    p = RestartPipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique, request.param)
    yield p
    p.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("restarts", ["initial"], indirect=True)
def test_initial_snapshot_killed_at_several_points_ends_equal(restarts: RestartPipeline) -> None:
    """The first kill lands as the first attempt starts reading, the second halfway through
    the keyless table (read first), the others spread over the keyed one: each next start takes
    the snapshot again."""
    p = restarts
    cdc = p.connector()
    p.writes.start()
    for k in range(KILLS):
        wait_for(lambda k=k: p.attempts() > k, 60, f"snapshot attempt {k + 1}", interval_s=0.01)
        base = p.published() if k else 0
        point = [0, BAG_ROWS // 2][k] if k < 2 else BAG_ROWS + KEYED_ROWS * (k - 1) // KILLS
        while p.published() - base < point:
            assert cdc.alive(), cdc.output()[-3000:]
            time.sleep(0.005)
        cdc.kill()
        cdc = p.connector()
    try:
        p.settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert p.attempts() == KILLS + 1
    assert cdc.output().count("dropped slot") == KILLS
    p.assert_equal()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("restarts", ["always"], indirect=True)
def test_snapshot_always_restarted_ends_equal(restarts: RestartPipeline) -> None:
    """Each start of an ``always`` connector snapshots again while writes go on; once it
    streams, once killed inside its snapshot."""
    p = restarts
    cdc = p.connector()
    p.writes.start()
    for k in range(3):
        wait_for(lambda k=k: p.attempts() > k, 60, f"snapshot {k + 1}", interval_s=0.01)
        if k == 1:
            base = p.published()
            while p.published() - base < BAG_ROWS // 2:
                time.sleep(0.005)
            cdc.kill()
        else:
            wait_for(
                lambda: "streaming slot" in p.log.read_text().split(STARTED)[-1], 120, "streaming"
            )
            time.sleep(1)
            assert cdc.stop() == 0, cdc.output()[-3000:]
        cdc = p.connector()
    try:
        p.settle()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert p.attempts() == 4
    p.assert_equal()
