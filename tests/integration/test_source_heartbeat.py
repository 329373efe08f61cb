"""Heartbeats: a slot whose tables are idle or quiet does not hold WAL back.

Integration tests. ``CDC_TEST_HEARTBEAT_MB`` sets how much WAL the other writers produce
(default 20 MB; ``make test-full``: 100 MB).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)
from tests.support.services import drop_database

WAL_MB = int(os.environ.get("CDC_TEST_HEARTBEAT_MB", "20"))
HEARTBEAT_S = 1.0
CATCH_UP_S = 10 * HEARTBEAT_S  # "within a few heartbeat intervals", with room for a slow CI


def write_wal(dsn: str, table: str, megabytes: int) -> int:
    """Write about ``megabytes`` of WAL into ``table``; return the WAL position after it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = current_wal_lsn(dsn)
        while current_wal_lsn(dsn) - start < megabytes * 1024 * 1024:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, repeat('w', 500) FROM generate_series(1, 5000) g"
                ).format(sql.Identifier(table))
            )
    return current_wal_lsn(dsn)


def test_idle_slot_follows_wal_written_in_another_database(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE idle (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE beats (at timestamptz)")
    other = f"cdct_other_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    other_dsn = make_conninfo(pg_dsn, dbname=other)
    with psycopg.connect(other_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id int, v text)")
    name = f"idle{unique}"
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=name,
        heartbeat_interval_s=HEARTBEAT_S,
        heartbeat_query="INSERT INTO beats VALUES (now())",
        exclude_tables=["public.beats"],
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        slot = f"cdc_{name}"
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        end = write_wal(other_dsn, "busy", WAL_MB)
        started = time.monotonic()
        wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, CATCH_UP_S, "the idle slot")
        print(
            f"{WAL_MB} MB elsewhere; idle slot caught up {time.monotonic() - started:.1f} s later"
        )

        def beats() -> int:
            with psycopg.connect(database) as conn:
                row = conn.execute("SELECT count(*) FROM beats").fetchone()
            return int(row[0]) if row else 0

        # The slot may catch up (within 0.1 s of the WAL's end) before the first heartbeat is
        # due, a second after streaming started: wait for it rather than assume it ran.
        wait_for(lambda: beats() >= 1, CATCH_UP_S, "the heartbeat query to run")
    finally:
        assert cdc.stop() == 0, cdc.output()
        drop_database(pg_dsn, other)


def test_quiet_tables_follow_writes_to_tables_not_captured(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE quiet (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE noisy (id int, v text)")
    name = f"quiet{unique}"
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=name,
        tables=["public.quiet"],
        heartbeat_interval_s=HEARTBEAT_S,
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        slot = f"cdc_{name}"
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        end = write_wal(database, "noisy", WAL_MB)
        started = time.monotonic()
        wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, CATCH_UP_S, "the quiet slot")
        print(
            f"{WAL_MB} MB to an uncaptured table; caught up"
            f" {time.monotonic() - started:.1f} s later"
        )
    finally:
        assert cdc.stop() == 0, cdc.output()
