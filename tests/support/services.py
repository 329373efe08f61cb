"""Cleaning up after tests on the shared services: their databases (with slots) and topics."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support import ROOT

DEVSTACK = Path(os.environ.get("CDC_DEV_DIR", ROOT / ".devstack"))


def delete_test_topics(servers: str, tokens: set[str]) -> list[str]:
    """Delete the topics whose names hold one of ``tokens``; return their names."""
    if not tokens:
        return []
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        doomed = [t for t in admin.list_topics() if any(token in t for token in tokens)]
        for i in range(0, len(doomed), 100):
            admin.delete_topics(doomed[i : i + 100])
    finally:
        admin.close()
    return doomed


def drop_database(pg_dsn: str, name: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A database with logical slots cannot be dropped; a slot held by a walsender cannot be
        # dropped either, so end the holders first.
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE database = %s AND active_pid IS NOT NULL",
            (name,),
        )
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def fresh_database(server: str, name: str) -> Iterator[str]:
    """A new database ``name`` on the server of ``server`` (a DSN); yields its DSN, and drops it
    (with its slots) afterwards."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        drop_database(server, name)


def stop_kafka() -> None:
    """Stop the devstack's broker (tests marked ``devstack`` only: they run last)."""
    pid_file = DEVSTACK / "kafka" / "kafka.pid"
    if not pid_file.exists():
        pytest.fail(f"no devstack Kafka pid at {pid_file}: this test needs `scripts/devstack up`")
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def start_kafka() -> None:
    up = subprocess.run(
        [str(ROOT / "scripts" / "devstack"), "up"], capture_output=True, text=True, check=False
    )
    assert up.returncode == 0, up.stderr
