"""The source catalog's read of a moved row's current values, against a real PostgreSQL.

The walsender can decode a commit a moment before the committing backend leaves the proc array,
so a read made right then does not yet see the transaction: the moved row is not found and its
unchanged TOASTed values would be published as unavailable (a target that never held the row
would store null). The read must wait until its snapshot sees the transaction. A transaction held
open stands in for that moment here, for as long as the test likes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from connectors.postgres.catalog import PostgresCatalog


def test_current_values_waits_until_the_decoded_transaction_is_visible(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, big text, b bytea)")
        conn.execute("INSERT INTO items VALUES (1, repeat('x', 9000), '\\x00ff')")
    with (
        psycopg.connect(database, autocommit=True) as reader,
        psycopg.connect(database) as mover,
    ):
        catalog = PostgresCatalog(reader)
        mover.execute("UPDATE items SET id = 2 WHERE id = 1")
        (xid,) = mover.execute("SELECT pg_current_xact_id()::text::bigint").fetchone() or (0,)
        xid &= 0xFFFFFFFF  # wal2json reports the 32-bit xid
        result: list[Any] = []
        read = threading.Thread(
            target=lambda: result.append(
                catalog.current_values("public", "items", {"id": "2"}, ["big", "b"], xid)
            )
        )
        read.start()
        time.sleep(0.5)
        assert read.is_alive(), f"read before the transaction was visible: {result}"
        mover.commit()
        read.join(10)
    assert result == [{"big": "x" * 9000, "b": "00ff"}]


def test_current_values_of_a_row_that_is_gone_is_none(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, big text)")
        conn.execute("INSERT INTO items VALUES (1, NULL)")
        (xid,) = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone() or (0,)
        catalog = PostgresCatalog(conn)
        # A row whose asked-for columns are all null is still there.
        assert catalog.current_values("public", "items", {"id": "1"}, ["big"], xid) == {"big": None}
        assert catalog.current_values("public", "items", {"id": "7"}, ["big"], xid) is None
        assert catalog.current_values("public", "items", {"id": "1"}, ["big"]) == {"big": None}


def test_a_table_created_by_the_decoded_transaction_is_found(database: str) -> None:
    with (
        psycopg.connect(database, autocommit=True) as reader,
        psycopg.connect(database) as creator,
    ):
        catalog = PostgresCatalog(reader)
        creator.execute("CREATE TABLE fresh (id int PRIMARY KEY, v text)")
        (xid,) = creator.execute("SELECT pg_current_xact_id()::text::bigint").fetchone() or (0,)
        result: list[Any] = []
        read = threading.Thread(
            target=lambda: result.append(catalog.table("public", "fresh", xid=xid & 0xFFFFFFFF))
        )
        read.start()
        time.sleep(0.5)
        assert read.is_alive(), f"read before the transaction was visible: {result}"
        creator.commit()
        read.join(10)
    assert [(r.columns, r.key) for r in result] == [(("id", "v"), ("id",))]
