"""Crash the connector with SIGKILL at random moments during a mixed workload: nothing is lost.

Integration test. Size knobs (``make test`` runs them small; ``make test-full`` at full size):
``CDC_TEST_KILLS`` (SIGKILLs, default 4; full 12) and ``CDC_TEST_COPY_ROWS`` (rows of the one big
COPY, default 20 000; full 100 000).

Afterwards, every change the reference slot saw committed is on Kafka (by ``cdc-event-id``), the
copies of a re-published change are identical, and each key's changes first appear in commit order.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from tests.harness import (
    CdcProcess,
    Event,
    create_reference_slot,
    current_wal_lsn,
    read_topics,
    reference_changes,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

KILLS = int(os.environ.get("CDC_TEST_KILLS", "4"))
COPY_ROWS = int(os.environ.get("CDC_TEST_COPY_ROWS", "20000"))

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, version int NOT NULL, payload text);
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(20, 4) NOT NULL);
CREATE TABLE bulk (id bigint PRIMARY KEY, v text);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 50) g;
"""


class Workload(threading.Thread):
    """Small transactions, many-statement transactions, and one big COPY when asked."""

    def __init__(self, dsn: str, seed: int, pause_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.pause_s = pause_s
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.copy_now = threading.Event()
        self.copied = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:
            self.error = e

    def _run(self) -> None:
        rng = self.rng
        next_id = 1
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                if self.copy_now.is_set() and not self.copied.is_set():
                    with conn.cursor().copy("COPY bulk (id, v) FROM STDIN") as copy:
                        for i in range(COPY_ROWS):
                            copy.write_row((i, f"row {i}"))
                    self.copied.set()
                    self.commits += 1
                    continue
                kind = rng.random()
                with conn.transaction():
                    if kind < 0.6:
                        conn.execute(
                            "INSERT INTO items VALUES (%s, 1, %s)", (next_id, f"p{next_id}")
                        )
                        next_id += 1
                        conn.execute(
                            "UPDATE items SET version = version + 1, payload = %s WHERE id = %s",
                            (f"u{rng.random()}", rng.randrange(1, next_id)),
                        )
                        if rng.random() < 0.2:
                            conn.execute(
                                "DELETE FROM items WHERE id = %s", (rng.randrange(1, next_id),)
                            )
                    else:
                        # A transaction of many statements: transfers between accounts.
                        for _ in range(rng.randrange(10, 60)):
                            a, b = rng.sample(range(1, 51), 2)
                            amount = round(rng.random() * 10, 4)
                            conn.execute(
                                "UPDATE accounts SET balance = balance - %s WHERE id = %s",
                                (amount, a),
                            )
                            conn.execute(
                                "UPDATE accounts SET balance = balance + %s WHERE id = %s",
                                (amount, b),
                            )
                self.commits += 1
                time.sleep(self.pause_s)


def check_delivery(expected: list[Any], events: list[Event]) -> dict[str, int]:
    """Every expected change is on Kafka; copies identical; per-key first appearance in order."""
    want = {c.event_id: c for c in expected}
    seen: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.value is not None:
            assert e.event_id is not None, e
            seen[e.event_id].append(e)
    missing = sorted(set(want) - set(seen))
    assert not missing, f"{len(missing)} committed changes missing from Kafka, e.g. {missing[:5]}"
    invented = sorted(set(seen) - set(want))
    assert not invented, f"{len(invented)} events no committed change explains: {invented[:5]}"
    for event_id, copies in seen.items():
        change = want[event_id]
        for e in copies:
            assert e.value is not None
            assert e.op == change.op, event_id
            assert e.value["before"] == change.before, event_id
            assert e.value["after"] == change.after, event_id
            assert e.value["source"]["lsn"] == change.lsn, event_id
    first_seen: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    done: set[str] = set()
    for e in sorted(events, key=lambda e: (e.topic, e.partition, e.offset)):
        if e.value is None or e.event_id in done or e.op == "t":
            continue
        done.add(e.event_id or "")
        commit, index = (int(x) for x in (e.event_id or "").split(":"))
        first_seen[(e.topic, repr(e.key))].append((commit, index))
    for key, order in first_seen.items():
        assert order == sorted(order), f"changes of {key} first appeared out of commit order"
    records = sum(len(v) for v in seen.values())
    return {"changes": len(want), "records": records, "duplicates": records - len(want)}


def test_sigkill_at_random_moments_loses_nothing(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    name = f"crash{unique}"
    slot = f"cdc_{name}"
    config = write_config(tmp_path / "cdc.toml", database, kafka_bootstrap, name=name)
    log = tmp_path / "cdc.log"
    cdc = CdcProcess(config, log)
    wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
    create_reference_slot(database, f"ref_{unique}")

    rng = random.Random(int(unique, 16))
    workload = Workload(database, seed=rng.randrange(1 << 30))
    workload.start()
    try:
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.5))
            if kill == 1:
                workload.copy_now.set()  # the big COPY happens while kills go on
            assert cdc.alive(), cdc.output()
            cdc.kill()
            cdc = CdcProcess(config, log)
        wait_for(workload.copied.is_set, 120, "the COPY")
        time.sleep(1)
    finally:
        workload.stop.set()
        workload.join(30)
    assert workload.error is None, workload.error
    end = current_wal_lsn(database)
    try:
        wait_for(
            lambda: slot_confirmed_lsn(database, slot) >= end, 240, "the connector to catch up"
        )
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]

    expected = reference_changes(database, f"ref_{unique}", ["public.*"])
    assert sum(1 for c in expected if c.table == "bulk") == COPY_ROWS
    topics = [f"{name}.public.{t}" for t in ("items", "accounts", "bulk")]
    stats = check_delivery(expected, read_topics(kafka_bootstrap, topics, timeout_s=120))
    print(f"{KILLS} SIGKILLs, {workload.commits} transactions: {stats}")
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
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    name = f"drop{unique}"
    slot = f"cdc_{name}"
    config = write_config(tmp_path / "cdc.toml", database, kafka_bootstrap, name=name)
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
    create_reference_slot(database, f"ref_{unique}")
    workload = Workload(database, seed=int(unique, 16), pause_s=0.01)
    workload.start()
    try:
        for _ in range(3):
            wait_for(lambda: streaming(pg_dsn, slot), 30, "the connector to stream again")
            time.sleep(1)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                # What a failover, a restart or an operator does to the walsender.
                terminated = conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                    " WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (slot,),
                ).fetchall()
            assert terminated == [(True,)]
    finally:
        workload.stop.set()
        workload.join(30)
    end = current_wal_lsn(database)
    try:
        wait_for(
            lambda: slot_confirmed_lsn(database, slot) >= end, 120, "the connector to catch up"
        )
        assert cdc.alive()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    assert "retrying in" in cdc.output()
    expected = reference_changes(database, f"ref_{unique}", ["public.*"])
    topics = [f"{name}.public.{t}" for t in ("items", "accounts")]
    check_delivery(expected, read_topics(kafka_bootstrap, topics))
