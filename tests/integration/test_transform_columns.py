"""Columns and row filters through Kafka, both plugins: masked, hashed and excluded values and
filtered rows never appear in any topic's raw bytes (keys, values, headers), from the initial
snapshot, inserts, updates (REPLICA IDENTITY FULL too) and deletes; updates moving a row out and
back in give a delete then an insert or update; a PostgreSQL sink over the topics ends equal to
``SELECT ... WHERE filter`` of the source with the masks applied. With pgoutput on PostgreSQL
15+, the pushdown is visible in ``pg_publication_tables``. ``cdc check`` fails naming a masked
key column and an unknown column."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition

from cdc.cli import cli
from cdc.config import parse_config
from cdc.errors import CdcError
from cdc.globs import TableSelector
from connectors.postgres.catalog import PostgresCatalog
from connectors.postgres.source import PostgresSource
from tests.support.harness import read_topics, slot_confirmed_lsn, wait_for
from tests.support.replicas import Replicas, pg_columns, pg_table

SALT = "s4lt-for-tests"

SOURCE = """
CREATE TABLE customers (
    id int PRIMARY KEY, email text, phone text, secret text, region text, note text);
CREATE TABLE people (id int PRIMARY KEY, email text, region text, note text);
ALTER TABLE people REPLICA IDENTITY FULL;
INSERT INTO customers SELECT i, 'mail-' || i || '@secret.io', 'PHONE-' || i, 'SECRET-' || i,
    CASE WHEN i % 2 = 1 THEN 'eu' ELSE 'us' END,
    CASE WHEN i % 2 = 1 THEN 'note ' || i ELSE 'FILTERED-' || i END
    FROM generate_series(1, 6) i;
UPDATE customers SET phone = NULL WHERE id = 5;
INSERT INTO people SELECT i, 'pmail-' || i || '@secret.io',
    CASE WHEN i % 2 = 1 THEN 'eu' ELSE 'us' END,
    CASE WHEN i % 2 = 1 THEN 'note ' || i ELSE 'FILTERED-' || i END
    FROM generate_series(1, 4) i;
"""
CHANGES = """
INSERT INTO customers VALUES (7, 'mail-7@secret.io', 'PHONE-7', 'SECRET-7', 'eu', 'note 7');
INSERT INTO customers VALUES (8, 'mail-8@secret.io', 'PHONE-8', 'SECRET-8', 'us', 'FILTERED-8');
UPDATE customers SET email = 'new-1@secret.io', secret = 'SECRET-1b' WHERE id = 1;
UPDATE customers SET region = 'us', note = 'FILTERED-3b', phone = 'PHONE-3b' WHERE id = 3;
UPDATE customers SET region = 'eu', note = 'back 3' WHERE id = 3;
UPDATE customers SET note = 'FILTERED-2b' WHERE id = 2;
DELETE FROM customers WHERE id IN (5, 4);
UPDATE people SET region = 'us', note = 'FILTERED-1b', email = 'pnew-1@secret.io' WHERE id = 1;
UPDATE people SET region = 'eu', note = 'back 1' WHERE id = 1;
UPDATE people SET note = 'FILTERED-2b' WHERE id = 2;
DELETE FROM people WHERE id IN (3, 4);
INSERT INTO people VALUES (5, 'pmail-5@secret.io', 'uk', 'note 5');
"""
RULES = """mask_salt = "${CDC_TEST_MASK_SALT}"
[[connectors.columns]]
tables = ["public.customers"]
include = ["id", "email", "phone", "region", "note"]
mask = { phone = "***" }
[[connectors.columns]]
tables = ["public.*"]
hash = ["email"]
[[connectors.filters]]
tables = ["public.customers"]
where = "region = 'eu'"
[[connectors.filters]]
tables = ["public.people"]
where = "region IN ('eu', 'uk')"
"""
NEVER = [b"@secret.io", b"PHONE-", b"SECRET-", b"FILTERED", b"mail-", SALT.encode()]


def raw_records(kafka: str, prefix: str) -> list[bytes]:
    """Every record of every topic of the test, as its key, value and headers' raw bytes."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        topics = [t for t in consumer.topics() if t.startswith(prefix + ".")]
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[bytes] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    parts = [r.key or b"", r.value or b""]
                    parts += [k.encode() + b"=" + (v or b"") for k, v in r.headers]
                    out.append(b"\0".join(parts))
        return out
    finally:
        consumer.close()


def sha(text: str) -> str:
    return hashlib.sha256(SALT.encode() + text.encode()).hexdigest()


def expected(dsn: str, table: str, columns: str, where: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {columns} FROM {table} WHERE {where}").fetchall()
    return sorted(rows, key=repr)


@pytest.mark.parametrize(
    "replicas",
    [("wal2json", ("pg",)), ("pgoutput", ("pg",))],
    indirect=True,
    ids=["wal2json", "pgoutput"],
)
def test_masks_excludes_and_filters_through_kafka_and_a_sink(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_TEST_MASK_SALT", SALT)
    text = replicas.config.read_text()
    replicas.config.write_text(
        text.replace('snapshot = "initial"\n', 'snapshot = "initial"\n' + RULES, 1)
    )
    with psycopg.connect(replicas.source, autocommit=True) as conn:
        conn.execute(SOURCE)
    replicas.start()
    try:
        wait_for(lambda: slot_confirmed_lsn(replicas.source, replicas.slot), 60, "the slot")
        with psycopg.connect(replicas.source, autocommit=True) as conn:
            conn.execute(CHANGES)
        replicas.settle()
    finally:
        replicas.stop()
    assert SALT not in replicas.log.read_text(errors="replace")

    raw = raw_records(replicas.kafka, replicas.prefix)
    assert len(raw) > 10
    for record in raw:
        for secret in NEVER:
            assert secret not in record, (secret, record)

    prefix = replicas.prefix
    customers = read_topics(replicas.kafka, [f"{prefix}.public.customers"])
    people = read_topics(replicas.kafka, [f"{prefix}.public.people"])
    for e in customers + people:
        for image in (e.value or {}).get("before"), (e.value or {}).get("after"):
            assert image is None or "secret" not in image, e
        assert b"secret" not in e.headers.get("cdc-types", b""), e
    # The hash is the salted SHA-256 of the value's text; NULL stays NULL.
    after = {e.key["id"]: e.value["after"] for e in customers if e.value and e.op != "d"}
    assert after[1]["email"] == sha("new-1@secret.io")
    assert after[7] == {
        "id": 7,
        "email": sha("mail-7@secret.io"),
        "phone": "***",
        "region": "eu",
        "note": "note 7",
    }
    snapshot = [e for e in customers if e.op == "r"]
    assert {e.key["id"] for e in snapshot} == {1, 3, 5}
    assert [(e.value or {})["after"]["phone"] for e in snapshot if e.key["id"] == 5] == [None]

    def ops(events: list[Any], key: int) -> list[str | None]:
        return [e.op for e in events if e.key == {"id": key} and e.value is not None]

    # Moved out and back in: a delete, then (only the key known) an update...
    assert ops(customers, 3) == ["r", "d", "u"]
    # ... or (the old row known: REPLICA IDENTITY FULL) an insert.
    assert ops(people, 1) == ["r", "d", "c"]
    moved_out = next(e for e in people if e.key == {"id": 1} and e.op == "d")
    assert moved_out.value is not None
    assert moved_out.value["before"]["email"] == sha("pmail-1@secret.io")
    assert ops(people, 2) == [] and ops(people, 4) == []
    assert ops(people, 3) == ["r", "d"]

    # The sink's table is the filtered source, masked.
    pg = replicas.replicas["pg"]
    assert pg_columns(pg, "customers") == ["id", "email", "phone", "region", "note"]
    masked_email = "encode(sha256(convert_to(%s || email, 'UTF8')), 'hex')"
    columns = (
        f"id::text, {masked_email.replace('%s', repr(SALT))},"
        " CASE WHEN phone IS NULL THEN NULL ELSE '***' END, region, note"
    )
    assert pg_table(pg, "customers") == expected(
        replicas.source, "customers", columns, "region = 'eu'"
    )
    people_columns = f"id::text, {masked_email.replace('%s', repr(SALT))}, region, note"
    assert pg_table(pg, "people") == expected(
        replicas.source, "people", people_columns, "region IN ('eu', 'uk')"
    )
    assert replicas.dead_letters() == {}

    if replicas.plugin == "pgoutput":
        with psycopg.connect(replicas.source) as conn:
            if conn.info.server_version >= 150000:
                rows = conn.execute(
                    "SELECT tablename, attnames, rowfilter FROM pg_publication_tables"
                    " WHERE pubname = %s AND schemaname = 'public'",
                    (replicas.slot,),
                ).fetchall()
                found = {t: (list(a), f) for t, a, f in rows}
                # customers: its include as a column list; its filter names a column outside
                # the key, so not pushed. people: the filter (FULL identity covers it).
                assert found["customers"] == (["id", "email", "phone", "region", "note"], None)
                assert found["people"][0] == ["id", "email", "region", "note"]
                assert "'uk'" in found["people"][1]


def test_check_names_a_masked_key_column_and_an_unknown_column(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text)")
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "chk{unique}"\ndsn = "{database}"\n'
        '[[connectors.columns]]\ntables = ["public.customers"]\nmask = { id = "x", emial = "y" }\n'
        '[[connectors.filters]]\ntables = ["public.customers"]\nwhere = "regoin = \'eu\'"\n'
    )
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code != 0, result.output
    fails = [line for line in result.output.splitlines() if "FAIL" in line]
    assert any("public.customers: key column id is masked" in line for line in fails), fails
    assert any("public.customers: column emial" in line for line in fails), fails
    assert any("public.customers: column regoin" in line for line in fails), fails


def test_run_checks_the_rules_against_the_partitions_it_publishes(
    database: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``partitions = "leaf"`` each partition is published as a table: ``cdc run`` checks
    the rules against the partitions, as ``cdc check`` does. It used to check them against the
    partitioned tables, so a typo in a mask on a partition (the column then published in clear)
    started with a warning that the rule matched nothing, while a rule on the partitioned
    table, which matches none of the published tables, said nothing."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id int, email text, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
            " CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (100)"
        )
    loaded = parse_config(
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
        f'[[connectors]]\nname = "leaf{unique}"\ndsn = "{database}"\npartitions = "leaf"\n'
        'mask_salt = "salt"\n[[connectors.columns]]\ntables = ["public.events_1"]\n'
        'mask = { emial = "x" }\n'
        '[[connectors.columns]]\ntables = ["public.events"]\nhash = ["email"]\n'
    )
    config = loaded.connectors[0]
    source = PostgresSource(config, loaded.kafka)
    with (
        psycopg.connect(database, autocommit=True) as conn,
        pytest.raises(CdcError, match=r"public\.events_1: column emial"),
    ):
        source._warn_about_tables(
            conn, TableSelector(config.tables, config.exclude_tables), PostgresCatalog(conn)
        )
    assert "[[connectors.columns]] #2 matches no captured table" in caplog.text
    assert "#1 matches no captured table" not in caplog.text


@pytest.mark.parametrize("via", ["run", "check"])
def test_a_rule_naming_a_partition_of_a_root_published_table_is_an_error(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, via: str
) -> None:
    """With ``partitions = "root"`` (the default) a partition's rows are published as its
    partitioned table's: a column rule or a filter naming the partition shaped nothing, and its
    rows went out in clear, with only a warning that the rule matched no captured table."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id int, email text, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
            " CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (100);"
            " CREATE TABLE other (id int PRIMARY KEY, email text)"
        )
    text = (
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "root{unique}"\ndsn = "{database}"\n'
        '[[connectors.columns]]\ntables = ["public.events_*"]\nexclude = ["email"]\n'
        '[[connectors.filters]]\ntables = ["public.events_1"]\nwhere = "id > 5"\n'
        '[[connectors.columns]]\ntables = ["public.events", "public.events_1"]\n'
        'exclude = ["email"]\n'
        '[[connectors.columns]]\ntables = ["public.other"]\nexclude = ["email"]\n'
    )
    if via == "check":
        path = tmp_path / "cdc.toml"
        path.write_text(text)
        result = CliRunner().invoke(cli, ["check", "-c", str(path)])
        assert result.exit_code != 0, result.output
        said = "\n".join(line for line in result.output.splitlines() if "FAIL" in line)
    else:
        loaded = parse_config(text)
        config = loaded.connectors[0]
        source = PostgresSource(config, loaded.kafka)
        with (
            psycopg.connect(database, autocommit=True) as conn,
            pytest.raises(CdcError) as raised,
        ):
            source._warn_about_tables(
                conn, TableSelector(config.tables, config.exclude_tables), PostgresCatalog(conn)
            )
        said = str(raised.value)
    assert "[[connectors.columns]] #1 names public.events_1, a partition of public.events" in said
    assert "[[connectors.filters]] #1 names public.events_1, a partition of public.events" in said
    assert "#2" not in said and "#3" not in said, said
