"""Crash the connector with SIGKILL at random moments during a mixed workload: nothing is lost.

Integration tests. Size knobs (``make test`` runs them small; ``make test-full`` at full size):
``CDC_TEST_KILLS`` (SIGKILLs, default 4; full 12) and ``CDC_TEST_COPY_ROWS`` (rows of the one big
COPY, default 20 000; full 100 000).

Afterwards, every change the reference slot saw committed is on Kafka (by ``cdc-event-id``), the
copies of a re-published change are identical, and each key's changes first appear in commit order.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.harness import wait_for
from tests.support.scenario import Scenario

KILLS = int(os.environ.get("CDC_TEST_KILLS", "4"))
COPY_ROWS = int(os.environ.get("CDC_TEST_COPY_ROWS", "20000"))


@pytest.mark.parametrize(
    ("client", "plugin"),
    [
        ("kafka-python", "wal2json"),
        ("confluent-kafka", "wal2json"),
        ("confluent-kafka", "pgoutput"),
    ],
)
def test_sigkill_at_random_moments_loses_nothing(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, client: str, plugin: str
) -> None:
    """With pgoutput too: its events must equal the wal2json reference slot's, id for id."""
    s = Scenario(
        tmp_path,
        database,
        kafka_bootstrap,
        f"crash{unique}",
        copy_rows=COPY_ROWS,
        client=client,
        plugin=plugin,
    )
    rng = random.Random(unique)
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.5))
        if kill == 1:
            s.workload.copy_now.set()  # the big COPY happens while the kills go on
        s.restart()
    wait_for(s.workload.copied.is_set, 120, "the COPY")
    time.sleep(1)
    stats = s.finish(("items", "accounts", "bulk"))
    assert sum(1 for c in s.expected if c.table == "bulk") == COPY_ROWS
    print(f"{KILLS} SIGKILLs, {s.workload.commits} transactions: {stats}")
    assert stats["changes"] > COPY_ROWS


def streaming(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return row is not None and row[0] is not None


def test_dropped_replication_connection_reconnects(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    s = Scenario(tmp_path, database, kafka_bootstrap, f"drop{unique}", pause_s=0.01)
    for _ in range(3):
        wait_for(lambda: streaming(pg_dsn, s.slot), 30, "the connector to stream again")
        time.sleep(1)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            # What a failover, a restart or an operator does to the walsender.
            terminated = conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE slot_name = %s AND active_pid IS NOT NULL",
                (s.slot,),
            ).fetchall()
        assert terminated == [(True,)]
    assert s.cdc.alive()
    s.finish()
    assert "retrying in" in s.cdc.output()
