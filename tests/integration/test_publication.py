"""pgoutput's publication holds only the captured tables (and cdc.signal), kept in step.

A publication FOR ALL TABLES makes PostgreSQL refuse UPDATE and DELETE on every keyless table of
the database without a replica identity: the application's own writes fail. Unit tests of the
choice between schemas (``FOR TABLES IN SCHEMA``) and a table list; integration tests that the
application's writes to a table cdc does not capture still work, that a captured table created
while streaming is added and its rows arrive, and that an old FOR ALL TABLES publication is
reported with a switch that works.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli import cli
from cdc.config import parse_config
from cdc.globs import TableSelector
from connectors.postgres.publication import Publication, plan_publication
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
)

SIGNAL = ("cdc", "signal")


A, B, C = ("public", "a"), ("public", "b"), ("app", "c")


@pytest.mark.parametrize(
    ("includes", "excludes", "version", "schemas", "tables"),
    [
        # A whole schema on 15+; on 14 the tables one by one.
        (["public.*", "app.*"], [], 150000, ("app", "public"), ()),
        (["public.*", "app.*"], [], 140000, (), (C, A, B)),
        # An exclusion inside a schema: that schema's tables are listed.
        (["public.*", "app.*"], ["public.b"], 150000, ("app",), (A,)),
        # An exclusion that may match in any schema, or a glob without a schema part.
        (["public.*"], ["*.b"], 150000, (), (A,)),
        (["public.*"], ["tmp*"], 150000, (), (A, B)),
        # Only SCHEMA.* with a plain schema name publishes the schema.
        (["*.*"], [], 150000, (), (C, A, B)),
        (["pub?ic.*"], [], 150000, (), (A, B)),
        (["public.a"], [], 150000, (), (A,)),
        # The connector's own schema is never published whole, and of its tables only the
        # signal table is published.
        (["cdc.*", "public.*"], [], 150000, ("public",), ()),
    ],
)
def test_plan(
    includes: list[str],
    excludes: list[str],
    version: int,
    schemas: tuple[str, ...],
    tables: tuple[tuple[str, str], ...],
) -> None:
    select = TableSelector(includes, excludes)
    captured = [t for t in [A, B, C, ("cdc", "snapshots")] if select(*t)]
    plan = plan_publication(includes, excludes, captured, version)
    assert plan.schemas == schemas
    assert plan.tables == (*tables, SIGNAL)


SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE public.other (a int, b text);
INSERT INTO public.other SELECT g, 'x' FROM generate_series(1, 10) g;
CREATE TABLE public.cap_1 (id int PRIMARY KEY, v text);
CREATE TABLE app.t1 (id int PRIMARY KEY, v text);
"""


def config_text(kafka: str, name: str, dsn: str, tables: list[str]) -> str:
    listed = ", ".join(f'"{t}"' for t in tables)
    return (
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nplugin = "pgoutput"\n'
        f'tables = [{listed}]\nsnapshot = "never"\n'
    )


@pytest.mark.parametrize(
    ("tables", "new_table"),
    [(["public.cap_*"], "public.cap_new"), (["app.*"], "app.t_new")],
    ids=["table-list", "schema"],
)
def test_uncaptured_keyless_table_stays_writable_and_new_tables_join(
    tmp_path: Path,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    tables: list[str],
    new_table: str,
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    name = f"pub{unique}"
    config = tmp_path / "cdc.toml"
    config.write_text(config_text(kafka_bootstrap, name, database, tables))
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 60, "the slot")
        with psycopg.connect(database, autocommit=True) as conn:
            # The application's writes to a table cdc does not capture.
            conn.execute("UPDATE public.other SET b = 'y' WHERE a < 5")
            conn.execute("DELETE FROM public.other WHERE a = 1")
            # A captured table appears and is written to at once.
            conn.execute(f"CREATE TABLE {new_table} (id int PRIMARY KEY, v text)")
            conn.execute(f"INSERT INTO {new_table} SELECT g, 'v' FROM generate_series(1, 50) g")
        topic = f"{name}.{new_table}"

        def arrived() -> bool:
            try:
                events = read_topics(kafka_bootstrap, [topic], timeout_s=10)
            except Exception:
                return False
            return {e.key["id"] for e in events if e.key and e.op in ("c", "r")} == set(
                range(1, 51)
            )

        wait_for(arrived, 60, "the new table's rows")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"UPDATE {new_table} SET v = 'later' WHERE id = 7")
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}") >= end, 60, "the stream")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    events = read_topics(kafka_bootstrap, [topic])
    assert [e.value["after"]["v"] for e in events if e.op == "u" and e.value] == ["later"]
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT puballtables FROM pg_publication WHERE pubname = %s", (f"cdc_{name}",)
        ).fetchone()
        published = {
            f"{s}.{t}"
            for s, t in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (f"cdc_{name}",),
            ).fetchall()
        }
    assert row == (False,)
    assert "public.other" not in published
    assert {new_table, "cdc.signal"} <= published
    result = CliRunner().invoke(cli, ["check", "-c", str(config)])
    assert f"publication cdc_{name} exists, kept in step by the connector" in result.output


def test_all_tables_publication_is_reported_and_switched(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    name = f"all{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(f"CREATE PUBLICATION cdc_{name} FOR ALL TABLES")  # what cdc made before
    config = tmp_path / "cdc.toml"
    config.write_text(config_text(kafka_bootstrap, name, database, ["public.cap_*"]))
    result = CliRunner().invoke(cli, ["check", "-c", str(config)])
    assert f"WARN  connector {name}: publication cdc_{name} is FOR ALL TABLES" in result.output
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 60, "the slot")
        wait_for(lambda: "is FOR ALL TABLES" in cdc.output(), 30, "the warning")
        with psycopg.connect(database, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute("UPDATE public.other SET b = 'y'")
            conn.execute("INSERT INTO public.cap_1 VALUES (1, 'before the switch')")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    # The switch the warning gives, written while the connector is stopped.
    (connector,) = parse_config(config.read_text()).connectors
    with psycopg.connect(database, autocommit=True) as conn:
        publication = Publication(connector, "test", conn, TableSelector(connector.tables))
        statement = publication.switch_statement()
        with conn.transaction():
            for part in statement.split("; "):
                conn.execute(part)
        conn.execute("INSERT INTO public.cap_1 VALUES (2, 'after the switch')")
        # Dropped before the connector has read past the switch: the slot finds the old
        # publication by its name as of each change it decodes.
        conn.execute(f"DROP PUBLICATION cdc_{name}_all_tables")
        conn.execute("UPDATE public.other SET b = 'y'")  # allowed now
        conn.execute("INSERT INTO public.cap_1 VALUES (3, 'after the drop')")
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}") >= end, 60, "the stream")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    events = read_topics(kafka_bootstrap, [f"{name}.public.cap_1"])
    assert sorted(e.key["id"] for e in events if e.op == "c" and e.key) == [1, 2, 3]
    assert "does not exist" not in cdc.output()


def test_a_users_publication_is_used_as_it_is_and_its_gaps_reported(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    name = f"own{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("CREATE TABLE public.cap_2 (id int PRIMARY KEY)")
        conn.execute(f"CREATE PUBLICATION cdc_{name} FOR TABLE public.cap_1")
    config = tmp_path / "cdc.toml"
    config.write_text(config_text(kafka_bootstrap, name, database, ["public.cap_*"]))
    result = CliRunner().invoke(cli, ["check", "-c", str(config)])
    for problem in [
        f"publication cdc_{name} (not made by cdc, used as it is) does not hold cdc.signal",
        f"publication cdc_{name} (not made by cdc, used as it is) does not hold 1 captured"
        " table(s): public.cap_2;",
    ]:
        assert f"WARN  connector {name}: {problem}" in result.output, result.output
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 60, "the slot")
        wait_for(lambda: "does not hold 1 captured" in cdc.output(), 30, "the warning")
        time.sleep(6)  # a look of the stream loop
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    with psycopg.connect(database) as conn:
        published = conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (f"cdc_{name}",),
        ).fetchall()
    assert published == [("public", "cap_1")]
