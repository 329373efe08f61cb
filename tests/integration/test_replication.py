"""The replication connection (:mod:`connectors.postgres.replication`) against a real walsender.

Integration tests (devstack PostgreSQL)."""

from __future__ import annotations

import select
import threading

import psycopg

from connectors.postgres.pgoutput import pgoutput_options
from connectors.postgres.replication import ReplicationConnection
from tests.support.harness import wait_for


def insert(dsn: str, value: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (%s)", (value,))


def test_a_read_says_whether_it_waited_for_the_server(database: str) -> None:
    """The connector gathers messages for 1 ms only after a read that waited for the server
    (a low rate); a read that finds messages already there is draining a backlog and must not
    sleep (wide rows, a few per read, were read at a fifth of their rate)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("CREATE PUBLICATION p FOR TABLE t")
        conn.execute("SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
    repl = ReplicationConnection(database)
    try:
        repl.start("s", 0, pgoutput_options("p"))
        insert(database, 1)
        socket = repl._pgconn.socket  # the walsender's bytes, waiting before the read
        wait_for(lambda: select.select([socket], [], [], 0)[0], 30, "the insert on the socket")
        assert repl.read(timeout_s=5)
        assert not repl.waited
        while repl.read(timeout_s=0.5):
            pass  # the rest of the transaction
        writer = threading.Timer(0.3, insert, (database, 2))
        writer.start()
        try:
            assert repl.read(timeout_s=30)
            assert repl.waited
        finally:
            writer.join()
    finally:
        repl.close()
