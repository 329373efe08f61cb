"""A capture scenario shared by the delivery tests: schema, workload, connector, and the check.

:class:`Scenario` sets up a database with three tables, starts ``cdc run`` on it, creates the
reference slot (see :mod:`tests.support.harness`) and a :class:`Workload`;
:meth:`Scenario.finish` stops the workload, waits for the connector to confirm the end of WAL,
stops it (exit 0 within 10 s) and checks delivery with :func:`check_delivery`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from tests.support.harness import (
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

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, version int NOT NULL, payload text);
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(20, 4) NOT NULL);
CREATE TABLE bulk (id bigint PRIMARY KEY, v text);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 50) g;
"""


class Workload(threading.Thread):
    """Small transactions, many-statement transactions, and one big COPY when asked."""

    def __init__(self, dsn: str, seed: int, pause_s: float = 0.002, copy_rows: int = 0) -> None:
        super().__init__(daemon=True)
        self.copy_rows = copy_rows
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
                        for i in range(self.copy_rows):
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


class Scenario:
    """A connector streaming a database under a workload, and everything needed to judge it."""

    def __init__(
        self,
        tmp_path: Path,
        database: str,
        kafka: str,
        name: str,
        pause_s: float = 0.002,
        copy_rows: int = 0,
        client: str = "kafka-python",
        plugin: str = "wal2json",
        metrics_port: int = 0,
    ) -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(SCHEMA)
        self.database, self.kafka, self.name = database, kafka, name
        self.slot, self.reference = f"cdc_{name}", f"ref_{name}"
        self.config = write_config(
            tmp_path / "cdc.toml", database, kafka, name=name, kafka_client=client, plugin=plugin
        )
        if metrics_port:
            with self.config.open("a") as config:
                config.write(f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
        self.log = tmp_path / "cdc.log"
        self.cdc = CdcProcess(self.config, self.log)
        wait_for(lambda: slot_confirmed_lsn(database, self.slot), 30, "the connector's slot")
        create_reference_slot(database, self.reference)
        seed = random.Random(name).randrange(1 << 30)
        self.workload = Workload(database, seed, pause_s, copy_rows)
        self.workload.start()

    def restart(self) -> None:
        """SIGKILL the connector and start a new one, as a crash and a supervisor would."""
        assert self.cdc.alive(), self.cdc.output()
        self.cdc.kill()
        self.cdc = CdcProcess(self.config, self.log)

    def finish(self, tables: tuple[str, ...] = ("items", "accounts")) -> dict[str, int]:
        self.workload.stop.set()
        self.workload.join(30)
        assert self.workload.error is None, self.workload.error
        end = current_wal_lsn(self.database)
        try:
            wait_for(
                lambda: slot_confirmed_lsn(self.database, self.slot) >= end,
                240,
                "the connector to catch up",
            )
        finally:
            assert self.cdc.stop() == 0, self.cdc.output()[-3000:]
        self.expected = reference_changes(self.database, self.reference, ["public.*"])
        topics = [f"{self.name}.public.{t}" for t in tables]
        return check_delivery(self.expected, read_topics(self.kafka, topics, timeout_s=120))
