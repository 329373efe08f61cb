"""Column lists and row filters pushed into the publication the connector keeps (pgoutput,
PostgreSQL 15+), only where exact, and following the rules when they change between runs.

In-process: the connector's :class:`Publication` on the devstack's PostgreSQL, read back from
``pg_publication_tables``; the application's UPDATE and DELETE stay allowed on every table."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cdc.config import parse_config
from cdc.globs import TableSelector
from connectors.postgres.owntables import ensure_source_tables
from connectors.postgres.publication import Publication

SCHEMA = """
CREATE TABLE keyed (id int PRIMARY KEY, email text, secret text, region text);
CREATE TABLE fully (id int PRIMARY KEY, email text, region text);
ALTER TABLE fully REPLICA IDENTITY FULL;
CREATE TABLE bykey (id int PRIMARY KEY, v text);
CREATE TABLE masked_only (id int PRIMARY KEY, email text);
CREATE TABLE hidden (id int PRIMARY KEY, region text, secret text, v text);
CREATE TABLE texty (id int PRIMARY KEY, name text);
ALTER TABLE texty REPLICA IDENTITY FULL;
"""

RULES = """
[[connectors.columns]]
tables = ["public.fully"]
exclude = ["email"]
[[connectors.columns]]
tables = ["public.keyed"]
include = ["id", "email", "region"]
[[connectors.columns]]
tables = ["public.masked_only"]
mask = { email = "***" }
[[connectors.columns]]
tables = ["public.hidden"]
include = ["id", "v"]
[[connectors.filters]]
tables = ["public.hidden"]
where = "region = 'eu'"
[[connectors.filters]]
tables = ["public.keyed", "public.fully"]
where = "region IN ('eu', 'uk')"
[[connectors.filters]]
tables = ["public.bykey"]
where = "id > 10"
[[connectors.filters]]
tables = ["public.texty"]
where = "name >= 'm'"
"""


def config(dsn: str, name: str, rules: str) -> Any:
    text = (
        '[kafka]\nbootstrap_servers = "localhost:1"\n'
        f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nplugin = "pgoutput"\n'
        'tables = ["public.keyed", "public.fully", "public.bykey", "public.masked_only",'
        ' "public.texty", "public.hidden"]\n' + rules
    )
    return parse_config(text).connectors[0]


def published(conn: psycopg.Connection[Any], pub: str) -> dict[str, tuple[Any, Any]]:
    rows = conn.execute(
        "SELECT tablename, attnames, rowfilter FROM pg_publication_tables WHERE pubname = %s",
        (pub,),
    ).fetchall()
    return {t: (list(a), f) for t, a, f in rows}


def sync(dsn: str, name: str, rules: str) -> dict[str, tuple[Any, Any]]:
    c = config(dsn, name, rules)
    with psycopg.connect(dsn, autocommit=True) as conn:
        publication = Publication(c, "test", conn, TableSelector(c.tables))
        publication.ensure()
        publication.sync()
        publication.sync()  # a second look changes nothing
        return published(conn, c.publication)


def test_pushdown_where_exact_and_following_the_rules(database: str, unique: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("column lists and row filters need PostgreSQL 15")
        conn.execute(SCHEMA)
        ensure_source_tables(conn)
    name = f"push{unique}"
    rules = RULES
    found = sync(database, name, rules)
    # A primary key and REPLICA IDENTITY DEFAULT: the column list; its filter names a column
    # outside the key: not pushed.
    assert found["keyed"] == (["id", "email", "region"], None)
    # REPLICA IDENTITY FULL: the row filter (every column is in the identity), no column list.
    assert found["fully"][0] == ["id", "email", "region"]
    assert "region" in found["fully"][1] and "'eu'" in found["fully"][1]
    # The connector filters on an excluded column before it drops it: it stays in the list.
    assert found["hidden"] == (["id", "region", "v"], None)
    # A filter on the key alone is exact.
    assert found["bykey"] == (["id", "v"], "(id > 10)")
    # A mask needs the value; text ordering may differ from PostgreSQL's collation.
    assert found["masked_only"] == (["id", "email"], None)
    assert found["texty"] == (["id", "name"], None)
    with psycopg.connect(database, autocommit=True) as conn:
        for table in ("keyed", "fully", "bykey", "masked_only", "texty"):
            conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
            conn.execute(f"UPDATE {table} SET id = 2")  # PostgreSQL allows them
            conn.execute(f"DELETE FROM {table}")

    # The rules change between runs: the publication follows.
    found = sync(database, name, "")
    assert found["keyed"] == (["id", "email", "secret", "region"], None)
    assert found["fully"] == (["id", "email", "region"], None)
    assert found["bykey"] == (["id", "v"], None)
    found = sync(database, name, rules.replace("id > 10", "id > 20"))
    assert found["bykey"] == (["id", "v"], "(id > 20)")
    assert found["keyed"] == (["id", "email", "region"], None)


def test_no_pushdown_when_identity_does_not_cover_the_filter(database: str, unique: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("row filters need PostgreSQL 15")
        conn.execute(SCHEMA)
        ensure_source_tables(conn)
    name = f"push{unique}"
    rules = '[[connectors.filters]]\ntables = ["public.fully"]\nwhere = "region = \'eu\'"\n'
    assert sync(database, name, rules)["fully"][1] is not None
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("ALTER TABLE fully REPLICA IDENTITY DEFAULT")
    # The filter now names a column outside the identity: taken out, and writes work.
    assert sync(database, name, rules)["fully"] == (["id", "email", "region"], None)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO fully VALUES (1, 'a', 'eu')")
        conn.execute("UPDATE fully SET email = 'b'")
        conn.execute("DELETE FROM fully")


def test_a_column_added_later_is_published_from_its_first_row(database: str, unique: str) -> None:
    """An ``exclude`` rule publishes every other column, those added later too. As a column
    list (an include list to PostgreSQL) it was not exact: a column added later was left out
    of every change by PostgreSQL until the connector's next look (never sent: the target
    held NULL). An ``include`` rule leaves a new column out anyway: that list is exact."""
    with psycopg.connect(database, autocommit=True) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("column lists need PostgreSQL 15")
        conn.execute(SCHEMA)
        ensure_source_tables(conn)
    name = f"push{unique}"
    rules = (
        '[[connectors.columns]]\ntables = ["public.keyed"]\nexclude = ["secret"]\n'
        '[[connectors.columns]]\ntables = ["public.hidden"]\ninclude = ["id", "v"]\n'
    )
    found = sync(database, name, rules)
    assert found["keyed"] == (["id", "email", "secret", "region"], None)
    assert found["hidden"] == (["id", "v"], None)
    slot = f"slot_{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        try:
            conn.execute("ALTER TABLE keyed ADD COLUMN phone text")
            conn.execute("INSERT INTO keyed VALUES (1, 'e', 's', 'eu', 'PHONE-1')")
            conn.execute("ALTER TABLE hidden ADD COLUMN phone text")
            conn.execute("INSERT INTO hidden VALUES (1, 'eu', 's', 'v', 'PHONE-2')")
            sent = b"".join(
                bytes(data)
                for (data,) in conn.execute(
                    "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
                    " 'proto_version', '1', 'publication_names', %s)",
                    (slot, config(database, name, rules).publication),
                )
            )
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert b"PHONE-1" in sent, sent
    assert b"PHONE-2" not in sent, sent
