"""Routing through Kafka, both plugins: two tables merged onto one topic by a regex rewrite keep
each row's events in order (same key, same partition) and their keys apart; by-column routing
puts each tenant's rows on its own topic, and a row whose tenant changes moves topic with a
delete (and its tombstone) on the old one and a create on the new one. ``cdc check`` names a
by-column route outside the key and a missing outbox column. A SQLite sink of the routed topics
ends with tables equal to the source's."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli import cli
from tests.support.harness import CdcProcess, Event, read_topics, slot_confirmed_lsn, wait_for

SCHEMA = """
CREATE TABLE t_1 (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE t_2 (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE accounts (tenant text, id int, balance int, PRIMARY KEY (tenant, id));
"""
KEYS = 4
UPDATES = 300


def config(tmp_path: Path, kafka: str, name: str, dsn: str, plugin: str) -> Path:
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n[kafka.topics]\npartitions = 3\n'
        f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nplugin = "{plugin}"\n'
        'snapshot = "never"\ntables = ["public.*"]\n'
        # The two tables t_N onto one topic, Debezium's way (ByLogicalTableRouter).
        '[[connectors.routes]]\ntables = ["public.t_*"]\n'
        f"regex = '{name}\\.public\\.t_(\\d+)'\nreplacement = '{name}.merged'\n"
        '[[connectors.routes]]\ntables = ["public.accounts"]\nby_column = "tenant"\n'
        'topic = "{topic_prefix}.tenant.{value}"\n'
    )
    if plugin == "pgoutput":  # the sink's side is the same whatever the plugin: once
        # A sink of the routed topics: each event applied to the table its envelope names.
        path.write_text(
            path.read_text()
            + f'[[sinks]]\nname = "lite"\ntype = "sqlite"\npath = "{tmp_path / "lite.db"}"\n'
            f'group_id = "g-{name}"\ntopics = ["{name}.merged", "{name}.tenant.acme",'
            f' "{name}.tenant.globex", "{name}.tenant.big_co"]\n'
        )
    return path


def lite_rows(path: Path, table: str) -> list[tuple[Any, ...]] | None:
    try:
        with sqlite3.connect(path) as db:
            names = "tenant, id, balance" if table == "accounts" else "id, v"
            return db.execute(f"SELECT {names} FROM public_{table} ORDER BY {names}").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return None


def count(kafka: str, topics: list[str]) -> int:
    """Records in ``topics`` so far (0 while one is not created yet)."""
    try:
        return len(read_topics(kafka, topics))
    except ValueError:  # no partition yet: kafka-python's seek_to_beginning of nothing
        return 0


def table_and_key(event: Event) -> tuple[str, int]:
    return event.headers["cdc-table"].decode(), event.key["id"]


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_routed_topics_keep_per_key_order_and_tenants_apart(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    name = f"rt{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    cdc = CdcProcess(config(tmp_path, kafka_bootstrap, name, database, plugin), tmp_path / "log")
    rng = random.Random(unique)
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 60, "the slot")
        with psycopg.connect(database, autocommit=True) as conn:
            for table in ("t_1", "t_2"):  # the same ids in both tables
                conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {KEYS}) g")
            # Many updates of few keys, several per transaction, both tables interleaved.
            for step in range(1, UPDATES + 1, 3):
                with conn.transaction():
                    for s in range(step, step + 3):
                        table, key = rng.choice(("t_1", "t_2")), rng.randrange(1, KEYS + 1)
                        conn.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (s, key))
            conn.execute(
                "INSERT INTO accounts VALUES ('acme', 1, 10), ('acme', 2, 20),"
                " ('globex', 1, 30), ('big co', 1, 40)"
            )
            conn.execute("UPDATE accounts SET balance = balance + 1")
            conn.execute("DELETE FROM accounts WHERE tenant = 'acme' AND id = 2")
            conn.execute("UPDATE accounts SET tenant = 'globex', id = 2 WHERE tenant = 'acme'")
            finals: dict[str, dict[int, int]] = {
                t: dict(conn.execute(f"SELECT id, v FROM {t}").fetchall()) for t in ("t_1", "t_2")
            }
            sources = {
                "t_1": conn.execute("SELECT id, v FROM t_1 ORDER BY id, v").fetchall(),
                "t_2": conn.execute("SELECT id, v FROM t_2 ORDER BY id, v").fetchall(),
                "accounts": conn.execute(
                    "SELECT tenant, id, balance FROM accounts ORDER BY tenant, id, balance"
                ).fetchall(),
            }
        merged = f"{name}.merged"
        tenants = [f"{name}.tenant.{t}" for t in ("acme", "globex", "big_co")]
        expected = 2 * KEYS + UPDATES
        wait_for(lambda: count(kafka_bootstrap, [merged]) >= expected, 60, "updates")
        wait_for(lambda: count(kafka_bootstrap, tenants) >= 13, 60, "tenants' rows")
        lite = tmp_path / "lite.db"
        if plugin == "pgoutput":
            wait_for(
                lambda: all(lite_rows(lite, t) == rows for t, rows in sources.items()),
                60,
                "the sink's tables equal to the source's",
            )
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]

    events = read_topics(kafka_bootstrap, [merged])
    assert len(events) == expected
    history: dict[tuple[str, int], list[Any]] = defaultdict(list)
    partitions: dict[tuple[str, int], set[int]] = defaultdict(set)
    for e in events:  # in partition-offset order: a key's order, if it stays on one partition
        assert e.value is not None
        table, key = table_and_key(e)
        assert e.value["source"]["table"] == table.split(".")[1]
        # The key names the table, so keys of the two tables differ.
        assert e.key == {"id": key, "__dbz__physicalTableIdentifier": f"{name}.{table}"}
        assert e.headers["cdc-key-field"] == b"__dbz__physicalTableIdentifier"
        history[table, key].append(e.value["after"]["v"])
        partitions[table, key].add(e.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert len({p for ps in partitions.values() for p in ps}) > 1, "keys spread over partitions"
    for (table, key), values in history.items():
        assert values[0] == 0 and values == sorted(values), (table, key, values)
        assert values[-1] == finals[table.split(".")[1]][key]
    assert sum(len(v) for v in history.values()) == expected

    def ops(topic: str) -> dict[int, list[tuple[str | None, Any]]]:
        """Each key's events (by id) in order: a key's events are on one partition."""
        found: dict[int, list[tuple[str | None, Any]]] = defaultdict(list)
        where: dict[int, set[int]] = defaultdict(set)
        for e in read_topics(kafka_bootstrap, [topic]):
            assert e.key["tenant"] == e.topic.rsplit(".", 1)[1].replace("_", " ")
            found[e.key["id"]].append((e.op, None if e.value is None else e.value["after"]))
            where[e.key["id"]].add(e.partition)
        assert all(len(p) == 1 for p in where.values())
        return dict(found)

    acme, globex, big = (ops(t) for t in tenants)
    assert acme == {
        1: [
            ("c", {"tenant": "acme", "id": 1, "balance": 10}),
            ("u", {"tenant": "acme", "id": 1, "balance": 11}),
            ("d", None),  # moved to globex
            (None, None),  # its tombstone
        ],
        2: [
            ("c", {"tenant": "acme", "id": 2, "balance": 20}),
            ("u", {"tenant": "acme", "id": 2, "balance": 21}),
            ("d", None),
            (None, None),
        ],
    }
    assert globex == {
        1: [
            ("c", {"tenant": "globex", "id": 1, "balance": 30}),
            ("u", {"tenant": "globex", "id": 1, "balance": 31}),
        ],
        2: [("c", {"tenant": "globex", "id": 2, "balance": 11})],
    }
    assert big == {  # "big co": Kafka forbids the space
        1: [
            ("c", {"tenant": "big co", "id": 1, "balance": 40}),
            ("u", {"tenant": "big co", "id": 1, "balance": 41}),
        ]
    }


def test_cdc_check_names_a_by_column_outside_the_key_and_a_missing_outbox_column(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text)")
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "ck{unique}"\ndsn = "{database}"\ntables = ["public.*"]\n'
        '[[connectors.routes]]\ntables = ["public.t_*"]\nby_column = "v"\ntopic = "x.{value}"\n'
        '[[connectors.outbox]]\ntable = "public.outbox"\n'
    )
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code != 0, result.output
    for table in ("public.t_1", "public.t_2"):
        assert f"route of table {table}: by_column 'v' is not in the table's key (id)" in (
            result.output
        )
    assert "outbox table public.outbox: aggregate_id_column 'aggregateid': no such column" in (
        result.output
    )
    assert "outbox table public.outbox: payload_column 'payload': no such column" in result.output
