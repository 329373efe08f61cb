"""Initial snapshots: exact values, and snapshot + stream = source while the source keeps changing.

Integration tests on the devstack, with ``cdc run`` as a real process. ``CDC_TEST_SNAPSHOT_ROWS``
sets the size of the table present before the connector first starts (default 100 000;
``make test-full`` uses 1 000 000).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.exact import NOT_EXPRESSIBLE, ROWS, SCHEMA
from tests.support.harness import (
    CDC,
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
    waiting_on,
    write_config,
)
from tests.support.services import drop_database
from tests.support.sinks import pg_rows

SNAPSHOT_ROWS = int(os.environ.get("CDC_TEST_SNAPSHOT_ROWS", "100000"))
SCALE = max(1.0, SNAPSHOT_ROWS / 100_000)
"""Waits and timeouts grow with the table: about 5 000 rows/s through connector and sink."""
big_timeout = pytest.mark.timeout(int(300 * SCALE))


def test_snapshot_reads_are_the_same_events_as_streamed_rows(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """Rows present before the first start arrive as ``r`` events whose values and types are
    exactly those the stream gives the same rows."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO everything VALUES " + ", ".join(ROWS))
        conn.execute("CREATE TABLE empty (id int PRIMARY KEY)")
    prefix = f"snap{unique}"
    config = write_config(
        tmp_path / "cdc.toml", database, kafka_bootstrap, name=prefix, snapshot="initial"
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        slot = f"cdc_{prefix}"
        wait_for(lambda: slot_confirmed_lsn(database, slot), 60, "the slot")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("CREATE TABLE twin (LIKE everything INCLUDING ALL)")
            conn.execute("INSERT INTO twin SELECT * FROM everything")
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, 60, "the connector")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert "snapshot of 2 table(s)" in cdc.output()
    reads = read_topics(kafka_bootstrap, [f"{prefix}.public.everything"])
    streamed = read_topics(kafka_bootstrap, [f"{prefix}.public.twin"])
    assert [e.op for e in reads] == ["r"] * len(ROWS)
    assert [e.op for e in streamed] == ["c"] * len(ROWS)
    assert [e.value["source"]["snapshot"] for e in reads if e.value] == ["true"] * (
        len(ROWS) - 1
    ) + ["last"]
    by_id = {e.key["id"]: e for e in streamed}
    for read in reads:
        twin = by_id[read.key["id"]]
        assert read.value is not None and twin.value is not None
        after, twin_after = dict(read.value["after"]), dict(twin.value["after"])
        for column in NOT_EXPRESSIBLE.get(read.key["id"], ()):
            # wal2json 2.5 streams NaN and infinities as null; the snapshot reads them exactly.
            assert twin_after.pop(column) is None
            assert after.pop(column) in ("NaN", "Infinity", "-Infinity")
        assert after == twin_after, read.key
        assert orjson.loads(read.headers["cdc-types"]) == orjson.loads(twin.headers["cdc-types"])
    # Every read sorts before every streamed change (sinks' version guard), ids are unique.
    read_ids = [tuple(map(int, (e.event_id or "").split(":"))) for e in reads]
    stream_ids = [tuple(map(int, (e.event_id or "").split(":"))) for e in streamed]
    assert len(set(read_ids)) == len(read_ids)
    assert max(read_ids) < min(stream_ids)


def writer(dsn: str, rows: int, seed: int, stop: threading.Event) -> None:
    """Updates, deletes and re-inserts of the snapshotted rows, and new rows, until ``stop``.

    Every write sets ``n`` to the write's sequence number, so a row's ``n`` only ever grows: a
    target showing a smaller ``n`` than it showed before went back to an older version."""
    rng = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            i += 1
            row = rng.randrange(1, rows + 1)
            roll = rng.random()
            with conn.transaction():
                if roll < 0.5:
                    conn.execute("UPDATE big SET v = %s, n = %s WHERE id = %s", (f"u{i}", i, row))
                elif roll < 0.7:
                    conn.execute("DELETE FROM big WHERE id = %s", (row,))
                elif roll < 0.85:
                    conn.execute(
                        "INSERT INTO big VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE"
                        " SET v = EXCLUDED.v, n = EXCLUDED.n",
                        (row, f"back{i}", i),
                    )
                else:
                    conn.execute(
                        "INSERT INTO big VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        (rows + i, f"new{i}", i),
                    )
            time.sleep(0.002)


class SnapshotPipeline:
    def __init__(
        self,
        tmp_path: Path,
        pg_dsn: str,
        database: str,
        kafka: str,
        unique: str,
        snapshot: str = "initial",
        plugin: str = "wal2json",
    ) -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text, n int NOT NULL)")
            conn.execute(
                "INSERT INTO big SELECT g, md5(g::text), 0 FROM generate_series(1, %s) g",
                (SNAPSHOT_ROWS,),
            )
            conn.execute("ANALYZE big")
        self.replica_name = f"cdct_replica_{unique}"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.replica_name)))
        self.pg_dsn, self.source, self.kafka = pg_dsn, database, kafka
        self.replica = make_conninfo(pg_dsn, dbname=self.replica_name)
        self.prefix = f"snap{unique}"
        self.slot = f"cdc_{self.prefix}"
        self.config = tmp_path / "cdc.toml"
        self.config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka}"\n'
            f'[[connectors]]\nname = "{self.prefix}"\ndsn = "{database}"\n'
            f'snapshot = "{snapshot}"\nsnapshot_chunk_rows = 5000\nplugin = "{plugin}"\n'
            f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{self.prefix}.public.*"]\n'
            f'dsn = "{self.replica}"\ngroup_id = "g-{self.prefix}-pg"\n'
        )
        self.log = tmp_path / "cdc.log"
        self.stop = threading.Event()
        self.writes = threading.Thread(
            target=writer, args=(database, SNAPSHOT_ROWS, int(unique, 16), self.stop), daemon=True
        )

    def start(self) -> CdcProcess:
        return CdcProcess(self.config, self.log)

    def initial_state(self) -> str | None:
        with psycopg.connect(self.source) as conn:
            if not conn.execute("SELECT to_regclass('cdc.snapshots')").fetchone()[0]:  # type: ignore[index]
                return None
            row = conn.execute(
                "SELECT state FROM cdc.snapshots WHERE connector = %s AND kind = 'initial'"
                " AND table_name = '*'",
                (self.prefix,),
            ).fetchone()
        return None if row is None else str(row[0])

    def state(self, kind: str, table: str) -> tuple[str, int] | None:
        with psycopg.connect(self.source) as conn:
            if not conn.execute("SELECT to_regclass('cdc.snapshots')").fetchone()[0]:  # type: ignore[index]
                return None
            row = conn.execute(
                "SELECT state, rows_done FROM cdc.snapshots WHERE connector = %s AND kind = %s"
                " AND table_name = %s",
                (self.prefix, kind, table),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def rows_done(self, kind: str = "initial") -> int:
        found = self.state(kind, "public.big")
        return 0 if found is None else found[1]

    def target_versions(self) -> dict[int, int]:
        """``id -> n`` in the sink's table now."""
        try:
            with psycopg.connect(self.replica) as conn:
                return dict(conn.execute("SELECT id, n FROM public.big").fetchall())
        except psycopg.errors.UndefinedTable:
            return {}

    def settle(self) -> None:
        self.stop.set()
        self.writes.join()
        end = current_wal_lsn(self.source)
        wait_for(lambda: slot_confirmed_lsn(self.source, self.slot) >= end, 240, "the connector")
        wait_for(self.sink_caught_up, 300 * SCALE, "the sink", interval_s=1)

    def sink_caught_up(self) -> bool:
        consumer = KafkaConsumer(bootstrap_servers=self.kafka)
        try:
            tp = TopicPartition(f"{self.prefix}.public.big", 0)
            end = consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()
        try:
            with psycopg.connect(self.replica) as conn:
                row = conn.execute(
                    "SELECT next_offset FROM cdc.offsets WHERE topic = %s", (tp.topic,)
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
        return row is not None and row[0] >= end

    def assert_equal(self) -> None:
        columns = ["id", "v", "n"]
        want = pg_rows(self.source, "big", columns, "id")
        got = pg_rows(self.replica, "big", columns, "id")
        assert len(got) == len(want)
        assert got == want

    def close(self) -> None:
        self.stop.set()
        drop_database(self.pg_dsn, self.replica_name)


@big_timeout
def test_initial_snapshot_with_writes_all_through_equals_the_source(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    p = SnapshotPipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique)
    try:
        cdc = p.start()
        try:
            wait_for(lambda: p.initial_state() is not None, 60, "the snapshot to start")
            p.writes.start()
            wait_for(lambda: p.initial_state() == "done", 300 * SCALE, "the snapshot", interval_s=1)
            time.sleep(2)
            p.settle()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        assert "(the slot's exported snapshot)" in cdc.output()
        p.assert_equal()
    finally:
        p.close()


@big_timeout
def test_initial_snapshot_killed_midway_is_redone(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """SIGKILLed with ``big`` wholly read and published but the snapshot not over: the next
    start reads a new snapshot. A lock on ``zz_gate`` (read after ``big``) holds the snapshot
    there, so the kill lands midway however fast the machine reads. The lock is taken once the
    snapshot reads ``big``: an ACCESS EXCLUSIVE lock takes an xid, and the slot's creation
    waits for every transaction with one."""
    p = SnapshotPipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique)
    gate = psycopg.connect(database, autocommit=True)
    try:
        gate.execute("CREATE TABLE zz_gate (id int PRIMARY KEY)")
        cdc = p.start()
        wait_for(
            lambda: p.state("initial", "public.big") is not None,
            60,
            "the snapshot to start",
            interval_s=0.01,
        )
        gate.execute("BEGIN")
        gate.execute("LOCK TABLE zz_gate IN ACCESS EXCLUSIVE MODE")
        p.writes.start()
        wait_for(
            lambda: (p.state("initial", "public.big") or ("",))[0] == "done",
            120 * SCALE,
            "the snapshot to read big",
        )
        wait_for(lambda: waiting_on(database, "zz_gate"), 60, "the snapshot to wait for zz_gate")
        assert p.initial_state() == "running"
        cdc.kill()
        gate.execute("ROLLBACK")
        assert p.initial_state() == "running"
        cdc = p.start()
        try:
            wait_for(lambda: p.initial_state() == "done", 300 * SCALE, "the snapshot", interval_s=1)
            time.sleep(2)
            p.settle()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        assert "dropped slot" in cdc.output()
        assert "(the slot's exported snapshot)" in cdc.output()
        p.assert_equal()
    finally:
        gate.close()
        p.close()


@big_timeout
@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_incremental_snapshot_killed_once_never_goes_back(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    """An incremental snapshot requested with ``cdc snapshot`` while writes go on, the process
    SIGKILLed once midway: the sink ends equal to the source, and no row it showed ever went back
    to an older version (its ``n`` never shrank) while we watched. With pgoutput too, whose
    watermarks travel through the publication and whose transactions' ends are known late."""
    p = SnapshotPipeline(
        tmp_path, pg_dsn, database, kafka_bootstrap, unique, snapshot="never", plugin=plugin
    )
    seen: dict[int, int] = {}
    regressions: list[tuple[int, int, int]] = []

    def watch() -> None:
        for row_id, n in p.target_versions().items():
            if n < seen.get(row_id, -1):
                regressions.append((row_id, seen[row_id], n))
            seen[row_id] = max(n, seen.get(row_id, -1))

    try:
        cdc = p.start()
        wait_for(lambda: slot_confirmed_lsn(p.source, p.slot), 60, "the slot")
        p.writes.start()
        asked = subprocess.run(
            [
                CDC,
                "snapshot",
                "-c",
                str(p.config),
                "--connector",
                p.prefix,
                "--table",
                "public.big",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "incremental snapshot of public.big requested" in asked.stdout
        half = SNAPSHOT_ROWS // 3
        while p.rows_done("incremental") < half:
            assert cdc.alive(), cdc.output()[-3000:]
            watch()
            time.sleep(0.1)  # often: the kill must land before the snapshot ends (cf. zz_gate)
        cdc.kill()
        watch()
        cdc = p.start()
        try:
            while (p.state("incremental", "public.big") or ("",))[0] != "done":
                assert cdc.alive(), cdc.output()[-3000:]
                watch()
                time.sleep(0.5)
            time.sleep(2)
            p.settle()
            watch()
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        assert "resuming the incremental snapshot of public.big after" in cdc.output()
        assert regressions == []
        p.assert_equal()
        status = subprocess.run(
            [CDC, "status", "-c", str(p.config)], capture_output=True, text=True, check=False
        )
        assert "incremental snapshot of public.big: done" in status.stdout, status.stdout
    finally:
        p.close()


def test_cdc_snapshot_refuses_tables_it_cannot_snapshot(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE keyless (a int)")
        conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
    config = write_config(
        tmp_path / "cdc.toml", database, kafka_bootstrap, name="s", tables=["public.k*"]
    )
    tables = ["public.keyless", "public.kmissing", "public.other", "nodot"]
    asked = subprocess.run(
        [CDC, "snapshot", "-c", str(config), "--connector", "s", *(f"--table={t}" for t in tables)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert asked.returncode == 1
    assert asked.stdout.splitlines() == [
        "FAIL  connector s: public.keyless has no primary key: incremental snapshots read in key"
        " order",
        "FAIL  connector s: public.kmissing: no such table",
        "FAIL  connector s: public.other is not captured by this connector (tables ="
        " ['public.k*'], exclude_tables = [])",
        "FAIL  connector s: 'nodot': write SCHEMA.TABLE",
    ]
    with psycopg.connect(database) as conn:  # nothing was asked for
        assert conn.execute("SELECT to_regclass('cdc.signal')").fetchone() == (None,)
    unknown = subprocess.run(
        [CDC, "snapshot", "-c", str(config), "--connector", "nope", "--table", "public.k"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2
    assert "no connector 'nope'" in unknown.stderr


def run_failing(config: Path) -> subprocess.CompletedProcess[str]:
    """``cdc run -c config``, which must stop at once with exit code 1."""
    failed = subprocess.run(
        [CDC, "run", "-c", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert failed.returncode == 1, failed.stderr
    return failed


def test_a_role_that_may_not_create_the_connector_tables(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """Without CREATE on the database: snapshot = "never" streams on without incremental
    snapshots and says so; a snapshot mode stops with the reason and the fix."""
    role = f"cdct_role_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD 'pw-secret'").format(
                sql.Identifier(role)
            )
        )
    try:
        dsn = make_conninfo(database, user=role, password="pw-secret")
        never = write_config(tmp_path / "never.toml", dsn, kafka_bootstrap, name=f"n{unique}")
        cdc = CdcProcess(never, tmp_path / "never.log")
        try:
            wait_for(lambda: slot_confirmed_lsn(database, f"cdc_n{unique}"), 60, "the slot")
            wait_for(
                lambda: "incremental snapshots are unavailable" in cdc.output(), 30, "a warning"
            )
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        initial = write_config(
            tmp_path / "initial.toml", dsn, kafka_bootstrap, name=f"i{unique}", snapshot="initial"
        )
        failed = run_failing(initial)
        assert "cannot create the connector's tables cdc.signal and cdc.snapshots" in failed.stderr
        assert f"GRANT CREATE ON DATABASE cdct_{unique}" in failed.stderr
        assert "pw-secret" not in failed.stderr + cdc.output()
        # pgoutput: no publication yet, and only a superuser may create one FOR ALL TABLES.
        pgoutput = write_config(
            tmp_path / "pgoutput.toml", dsn, kafka_bootstrap, name=f"p{unique}", plugin="pgoutput"
        )
        failed = run_failing(pgoutput)
        assert f"publication cdc_p{unique} does not exist and this user cannot" in failed.stderr
        assert "pw-secret" not in failed.stderr
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            drop_database(pg_dsn, f"cdct_{unique}")
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_last_published_read_says_last_when_a_filter_drops_the_last_row(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """``snapshot = "last"`` marks the snapshot's last published record (Debezium's end of the
    snapshot). It was put on the last row read, so a row filter dropping that row left the
    snapshot without a last record."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        conn.execute("INSERT INTO a SELECT generate_series(1, 5); INSERT INTO b SELECT * FROM a")
    prefix = f"last{unique}"
    config = write_config(
        tmp_path / "cdc.toml", database, kafka_bootstrap, name=prefix, snapshot="initial"
    )
    with config.open("a") as f:
        f.write('[[connectors.filters]]\ntables = ["public.b"]\nwhere = "id < 3"\n')
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        slot = f"cdc_{prefix}"
        wait_for(lambda: slot_confirmed_lsn(database, slot), 60, "the slot")
        wait_for(lambda: "snapshot of 10 row(s) is on Kafka" in cdc.output(), 60, "the snapshot")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    reads = read_topics(kafka_bootstrap, [f"{prefix}.public.a", f"{prefix}.public.b"])
    marks = [(e.topic, e.key["id"], e.value["source"]["snapshot"]) for e in reads if e.value]
    assert sorted(m for m in marks if m[2] == "last") == [(f"{prefix}.public.b", 2, "last")], marks
    assert len(marks) == 7
