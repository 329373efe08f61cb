"""Partitioned tables: every change of every partition on the partitioned table's topic, with its
key, and its PostgreSQL target equal to the source row for row, through both plugins.

Rows before the start (the initial snapshot reads the partitioned table), inserts, updates,
deletes and updates that move a row to another partition while streaming, a table with rows
attached as a partition, a partition detached (it is then a table of its own, captured on its own
topic), one truncated alone, one dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer
from psycopg.conninfo import make_conninfo

from connectors.postgres.owntables import SOURCE_DDL
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
)
from tests.support.services import drop_database, fresh_database
from tests.support.sinks import pg_rows

SCHEMA = """
CREATE TABLE m (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);
CREATE TABLE m4 PARTITION OF m FOR VALUES IN (4);
CREATE TABLE m5 PARTITION OF m FOR VALUES IN (5);
INSERT INTO m SELECT g, 1 + g % 2, 'before ' || g FROM generate_series(1, 40) g;
INSERT INTO m SELECT g, 4 + g % 2, 'before ' || g FROM generate_series(41, 60) g;
"""
COLUMNS = ["id", "k", "v"]


def write(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def topics(kafka: str, prefix: str) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        return {t for t in consumer.topics() if t.startswith(prefix + ".")}
    finally:
        consumer.close()


@pytest.fixture
def replica(pg_dsn: str, unique: str) -> Iterator[str]:
    """A database of its own for the PostgreSQL sink's target, dropped afterwards."""
    with fresh_database(pg_dsn, f"cdct_replica_{unique}") as dsn:
        yield dsn


def pipeline(
    tmp_path: Path,
    kafka: str,
    prefix: str,
    database: str,
    replica: str,
    topics: str,
    connector: str,
) -> Path:
    """cdc.toml: connector ``prefix`` on ``database`` (with the ``connector`` lines), and a
    PostgreSQL sink of its topics ``{prefix}.{topics}`` into ``replica``."""
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{database}"\n{connector}'
        f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{prefix}.{topics}"]\n'
        f'dsn = "{replica}"\ngroup_id = "g-{prefix}"\n'
    )
    return config


def equal(source: str, replica: str, table: str) -> bool:
    try:
        return pg_rows(replica, table, COLUMNS, "id, k") == pg_rows(source, table, COLUMNS, "id, k")
    except AssertionError:  # the sink has not made the target yet
        return False


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_partitions_published_on_the_partitioned_tables_topic(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    write(database, SCHEMA)
    prefix = f"part{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.*",
        f'plugin = "{plugin}"\ntables = ["public.*"]\nsnapshot = "initial"\n',
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}"), 60, "the slot")
        wait_for(lambda: equal(database, replica, "m"), 120, "the initial snapshot in the sink")
        write(
            database,
            "INSERT INTO m SELECT g, 1 + g % 2, 'new ' || g FROM generate_series(100, 140) g",
            "UPDATE m SET v = v || ' updated' WHERE id % 3 = 0",
            "DELETE FROM m WHERE id % 7 = 0",
            # Moved to another partition: a delete in one, an insert in the other.
            "UPDATE m SET k = 3 - k, v = 'moved' WHERE id % 5 = 0 AND k < 3",
        )
        # A table loaded on its own, then attached with its rows.
        write(
            database,
            "CREATE TABLE m3 (id int, k int, v text, PRIMARY KEY (id, k))",
            "INSERT INTO m3 SELECT g, 3, 'attached ' || g FROM generate_series(200, 230) g",
            "ALTER TABLE m ATTACH PARTITION m3 FOR VALUES IN (3)",
            "UPDATE m SET v = 'after attach' WHERE id IN (200, 201)",
            "DELETE FROM m WHERE id = 202",
            "INSERT INTO m VALUES (231, 3, 'inserted after attach')",
        )
        wait_for(lambda: equal(database, replica, "m"), 120, "the attached rows in the sink")
        # A partition detached: its rows leave the partitioned table. It is a table of its own
        # now, captured on its own topic.
        write(
            database,
            "ALTER TABLE m DETACH PARTITION m1",
            "UPDATE m1 SET v = 'detached' WHERE id < 20",
            "INSERT INTO m VALUES (300, 2, 'after detach')",
            "UPDATE m SET v = 'still here' WHERE k = 2 AND id < 30",
        )
        wait_for(lambda: equal(database, replica, "m"), 120, "the detached rows gone")
        # One partition truncated alone, then another one dropped.
        write(
            database,
            "TRUNCATE m4",
            "INSERT INTO m VALUES (400, 4, 'after truncate')",
            "DROP TABLE m5",
            "INSERT INTO m VALUES (401, 2, 'after drop')",
        )
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}") >= end, 120, "the stream")
        wait_for(lambda: equal(database, replica, "m"), 120, "the target equal to the source")
        wait_for(lambda: equal(database, replica, "m1"), 120, "the detached table's target")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    names = topics(kafka_bootstrap, prefix)
    assert f"{prefix}.public.m" in names
    for leaf in ("m2", "m4", "m5"):  # partitions all along
        assert f"{prefix}.public.{leaf}" not in names, cdc.output()[-3000:]
    events = read_topics(kafka_bootstrap, [f"{prefix}.public.m"])
    assert {tuple(e.key) for e in events if e.key} == {("id", "k")}
    assert {e.op for e in events} >= {"r", "c", "u", "d", "t"}
    output = cdc.output()
    assert "public.m: 1 partition(s) detached or dropped" in output
    assert "public.m: some of its partitions were truncated" in output


def test_partition_leaf_mode_keeps_topics_per_partition(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    write(database, SCHEMA)
    prefix = f"leaf{unique}"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{database}"\nplugin = "pgoutput"\n'
        'partitions = "leaf"\ntables = ["public.m1", "public.m2"]\nsnapshot = "initial"\n'
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}"), 60, "the slot")
        write(database, "INSERT INTO m VALUES (500, 1, 'x'), (501, 2, 'y')")
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}") >= end, 60, "the stream")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    names = topics(kafka_bootstrap, prefix)
    assert f"{prefix}.public.m" not in names
    m1 = read_topics(kafka_bootstrap, [f"{prefix}.public.m1"])
    assert len([e for e in m1 if e.op == "r"]) == 20
    assert [e.value["after"]["id"] for e in m1 if e.op == "c" and e.value] == [500]


def test_partitions_changed_while_the_connector_was_stopped(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """cdc.partitions remembers the trees: a detach and a drop made while the connector was
    down are repaired when it starts again."""
    write(database, SCHEMA)
    prefix = f"down{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.*",
        'plugin = "pgoutput"\ntables = ["public.m"]\nsnapshot = "initial"\n',
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: equal(database, replica, "m"), 120, "the initial snapshot")
        wait_for(lambda: "streaming slot" in cdc.output(), 30, "streaming")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    write(
        database,
        "ALTER TABLE m DETACH PARTITION m1",
        "DROP TABLE m5",
        "UPDATE m SET v = 'while down' WHERE k = 2",
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: equal(database, replica, "m"), 120, "the target repaired")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert "public.m: 2 partition(s) detached or dropped" in cdc.output()


def test_partition_attached_during_the_initial_snapshot(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """The initial snapshot reads the partitioned table as the slot's snapshot sees it; a table
    attached with its rows while the snapshot runs (no row event comes with it) is read too."""
    write(
        database,
        SCHEMA,
        # Read after m (tables are read in name order), and long enough to attach meanwhile.
        "CREATE TABLE z_big (id int PRIMARY KEY, v text)",
        "INSERT INTO z_big SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g",
        "CREATE TABLE m3 (id int, k int, v text, PRIMARY KEY (id, k))",
        "INSERT INTO m3 SELECT g, 3, 'attached ' || g FROM generate_series(200, 230) g",
    )
    prefix = f"during{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.m",
        'tables = ["public.z_big", "public.m"]\nsnapshot = "initial"\n',
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: "snapshot of 2 table(s)" in cdc.output(), 60, "the snapshot")
        write(database, "ALTER TABLE m ATTACH PARTITION m3 FOR VALUES IN (3)")
        assert "streaming slot" not in cdc.output(), "attached after the snapshot"
        wait_for(lambda: equal(database, replica, "m"), 120, "the attached rows")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert "public.m: a partition with rows was attached" in cdc.output()


def test_connector_tables_made_before_cdc_partitions_existed(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """cdc.signal and cdc.snapshots made by an administrator (docs/snapshots.md's way), a role that
    may not create cdc.partitions: the connector snapshots and streams on, remembering the
    partition trees in memory."""
    role = f"cdct_role_{unique}"
    write(pg_dsn, f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw'")
    try:
        write(
            database,
            SCHEMA,
            SOURCE_DDL,
            "DROP TABLE IF EXISTS cdc.partitions",  # as they were made before it existed
            f"GRANT USAGE ON SCHEMA cdc TO {role}",
            f"GRANT ALL ON ALL TABLES IN SCHEMA cdc TO {role}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA cdc TO {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        )
        prefix = f"old{unique}"
        config = tmp_path / "cdc.toml"
        dsn = make_conninfo(database, user=role, password="pw")
        config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
            f'[[connectors]]\nname = "{prefix}"\ndsn = "{dsn}"\nsnapshot = "initial"\n'
        )
        cdc = CdcProcess(config, tmp_path / "cdc.log")
        try:
            wait_for(lambda: "streaming slot" in cdc.output(), 60, "streaming")
            write(database, "INSERT INTO m VALUES (500, 1, 'streamed')")
            end = current_wal_lsn(database)
            wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}") >= end, 60, "it")
        finally:
            assert cdc.stop() == 0, cdc.output()[-3000:]
        events = read_topics(kafka_bootstrap, [f"{prefix}.public.m"])
        assert len([e for e in events if e.op == "r"]) == 60
        assert [e.key for e in events if e.op == "c"] == [{"id": 500, "k": 1}]
    finally:
        drop_database(pg_dsn, f"cdct_{unique}")
        write(pg_dsn, f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_keyless_partitioned_table_with_full_identity_on_its_partitions(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    """No primary key, REPLICA IDENTITY FULL on each partition (PostgreSQL sets it per table):
    the whole row is the key of the partitioned table's events, and its target is the same
    multiset of rows as the source."""
    write(
        database,
        "CREATE TABLE b (id int, k int, v text) PARTITION BY LIST (k)",
        "CREATE TABLE b1 PARTITION OF b FOR VALUES IN (1)",
        "CREATE TABLE b2 PARTITION OF b FOR VALUES IN (2)",
        "ALTER TABLE b1 REPLICA IDENTITY FULL",
        "ALTER TABLE b2 REPLICA IDENTITY FULL",
        "INSERT INTO b SELECT g % 10, 1 + g % 2, 'same' FROM generate_series(1, 40) g",
    )
    prefix = f"bag{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.*",
        f'plugin = "{plugin}"\ntables = ["public.b"]\nsnapshot = "initial"\n',
    )

    def same() -> bool:
        try:
            got = pg_rows(replica, "b", COLUMNS, "id, k, v")
        except AssertionError:
            return False
        return got == pg_rows(database, "b", COLUMNS, "id, k, v")

    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{prefix}"), 60, "the slot")
        wait_for(same, 120, "the initial snapshot")
        write(
            database,
            "INSERT INTO b VALUES (1, 1, 'same'), (2, 2, 'new')",
            "UPDATE b SET v = 'changed' WHERE ctid = (SELECT ctid FROM b1 WHERE id = 3 LIMIT 1)",
            "DELETE FROM b1 WHERE ctid = (SELECT ctid FROM b1 WHERE id = 5 LIMIT 1)",
            "UPDATE b SET k = 3 - k WHERE id = 7",  # moved to the other partition
        )
        wait_for(same, 120, "the target equal to the source")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    events = read_topics(kafka_bootstrap, [f"{prefix}.public.b"])
    assert all(set(e.key) == {"id", "k", "v"} for e in events if e.key)


def test_partition_detached_during_an_incremental_snapshot(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """A detach while the partitioned table's incremental snapshot is under way: the truncate
    empties the target, and the snapshot starts again from the first key (a chunk read before
    does not move its progress), so the target ends equal to the source."""
    write(
        database,
        SCHEMA,
        "INSERT INTO m SELECT g, 1 + g % 2, 'many ' || g FROM generate_series(1000, 40999) g",
    )
    prefix = f"inc{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.*",
        'tables = ["public.m"]\nsnapshot = "never"\nsnapshot_chunk_rows = 200\n',
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: "streaming slot" in cdc.output(), 60, "streaming")
        write(
            database,
            "INSERT INTO cdc.signal (connector, type, data) VALUES"
            f" ('{prefix}', 'execute-snapshot', '{{\"data-collections\": [\"public.m\"]}}')",
        )
        # 40 000 rows in chunks of 200 take several times the watch's 5 s.
        wait_for(lambda: "snapshot of public.m requested" in cdc.output(), 60, "the snapshot")
        write(database, "ALTER TABLE m DETACH PARTITION m1")
        wait_for(lambda: "starts again" in cdc.output(), 60, "the snapshot to start again")
        wait_for(lambda: equal(database, replica, "m"), 240, "the target equal to the source")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]


def test_wal2json_partition_created_outside_the_schemas_it_decodes(
    tmp_path: Path, replica: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    """tables = ["public.*"] is pushed to wal2json as add-tables "public.*": a partition of
    public.m created in another schema is skipped by wal2json. The connector notices it, asks
    for a snapshot of m and starts the stream again without that filter: nothing is lost."""
    write(database, SCHEMA)
    prefix = f"out{unique}"
    config = pipeline(
        tmp_path,
        kafka_bootstrap,
        prefix,
        database,
        replica,
        "public.*",
        'tables = ["public.*"]\nsnapshot = "initial"\n',
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: equal(database, replica, "m"), 120, "the initial snapshot")
        write(
            database,
            "CREATE SCHEMA parts",
            "CREATE TABLE parts.m9 PARTITION OF m FOR VALUES IN (9)",
            "INSERT INTO m SELECT g, 9, 'elsewhere' FROM generate_series(900, 920) g",
        )
        time.sleep(7)  # the connector's look, and a session started again
        write(database, "UPDATE m SET v = 'later' WHERE k = 9 AND id < 905")
        wait_for(lambda: equal(database, replica, "m"), 120, "the target equal to the source")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert "outside the schemas wal2json decodes (public)" in cdc.output()
