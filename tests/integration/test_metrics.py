"""``/metrics``, ``/healthz`` and ``/readyz`` scraped from a real ``cdc run``: a connector and two
sinks (PostgreSQL and SQLite) on the devstack.

After N changes the published and applied counters say N, by op; the sink's lag in seconds rises
while its target is locked and falls back to 0 once it caught up; ``/readyz`` turns 503 while
Kafka is stopped and 200 again after (tests/integration/test_source_kafka_outage.py, which stops
the devstack's broker anyway).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.harness import wait_for
from tests.support.metrics import Endpoint, free_port
from tests.support.sinks import Pipeline

SCHEMA = "CREATE TABLE public.m (id int PRIMARY KEY, v text)"
INSERTS, UPDATES, DELETES = 60, 20, 10


@pytest.fixture
def pipeline(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> Iterator[tuple[Pipeline, Endpoint]]:
    with started(
        Pipeline(tmp_path, pg_dsn, database, kafka_bootstrap, unique, schema=SCHEMA, tables=0)
    ) as running:
        yield running


@contextlib.contextmanager
def started(p: Pipeline) -> Iterator[tuple[Pipeline, Endpoint]]:
    port = free_port()
    with p.config.open("a") as config:
        config.write(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    process = p.start()
    endpoint = Endpoint(port)
    try:
        wait_for(endpoint.ready, 90, "/readyz 200")
        yield p, endpoint
    finally:
        if process.alive():
            process.stop()
        p.close()


def test_the_initial_snapshot_shows_its_progress(
    tmp_path: Path, pg_dsn: str, database: str, kafka_bootstrap: str, unique: str
) -> None:
    rows = 2500
    p = Pipeline(
        tmp_path, pg_dsn, database, kafka_bootstrap, unique, schema=SCHEMA, tables=0,
        snapshot="initial",
    )  # fmt: skip
    with psycopg.connect(p.source, autocommit=True) as conn:
        conn.execute("INSERT INTO m SELECT g, 'v' FROM generate_series(1, %s::int) g", (rows,))
        conn.execute("ANALYZE m")
    with started(p) as (_, endpoint):
        wait_for(
            lambda: endpoint.value("cdc_sink_records_applied_total", sink="lite", op="r") == rows,
            60,
            "the snapshot applied",
        )
        table = {"connector": p.prefix, "table": "public.m", "kind": "initial"}
        assert endpoint.value("cdc_connector_snapshot_rows_read", **table) == rows
        assert endpoint.value("cdc_connector_snapshot_rows_estimated", **table) == rows
        assert endpoint.value("cdc_connector_snapshot_state", **table, state="done") == 1
        assert endpoint.value("cdc_connector_snapshot_state", **table, state="running") == 0
        assert (
            endpoint.value("cdc_connector_events_published_total", table="public.m", op="r") == rows
        )
        assert endpoint.value("cdc_connector_state", state="streaming") == 1


def test_counters_say_what_flowed_and_lag_follows_the_target(
    pipeline: tuple[Pipeline, Endpoint],
) -> None:
    p, endpoint = pipeline
    with psycopg.connect(p.source, autocommit=True) as conn:
        for first in range(0, INSERTS, 20):  # three transactions
            conn.execute(
                "INSERT INTO m SELECT g, 'v' FROM generate_series(%s::int, %s::int) g",
                (first + 1, first + 20),
            )
        conn.execute("UPDATE m SET v = 'w' WHERE id <= %s", (UPDATES,))
        conn.execute("DELETE FROM m WHERE id > %s", (INSERTS - DELETES,))
    want = {"c": INSERTS, "u": UPDATES, "d": DELETES}
    connector = p.prefix
    for sink in ("pg", "lite"):
        wait_for(
            lambda sink=sink: (
                endpoint.value("cdc_sink_records_applied_total", sink=sink) == sum(want.values())
            ),
            60,
            f"sink {sink} applied {sum(want.values())}",
        )
    for op, n in want.items():
        table = "public.m"
        assert (
            endpoint.value(
                "cdc_connector_events_published_total", connector=connector, table=table, op=op
            )
            == n
        ), op
        for sink in ("pg", "lite"):
            assert (
                endpoint.value("cdc_sink_records_applied_total", sink=sink, table=table, op=op) == n
            ), (sink, op)
    assert endpoint.value("cdc_connector_records_acked_total") == sum(want.values()) + DELETES
    assert endpoint.value("cdc_connector_transactions_acked_total") >= 5
    assert endpoint.value("cdc_sink_batches_total", sink="pg") >= 1
    assert endpoint.value("cdc_sink_batch_apply_seconds_count", sink="pg") >= 1
    assert endpoint.value("cdc_sink_dlq_records_total", sink="pg") == 0
    assert endpoint.value("process_resident_memory_bytes") > 10e6
    wait_for(
        lambda: (
            endpoint.value("cdc_connector_replication_lag_seconds") == 0
            and endpoint.value("cdc_connector_records_in_flight") == 0
        ),
        30,
        "the connector caught up",
    )
    assert endpoint.value("cdc_connector_confirmed_lsn") > 0
    assert endpoint.value("cdc_connector_lag_bytes") >= 0
    assert endpoint.value("cdc_connector_seconds_since_last_event") >= 0
    status, body = endpoint.health("/healthz")
    assert (status, body["status"]) == (200, "ok")

    # The PostgreSQL sink's target held by a lock: its lag in seconds rises, then returns to 0.
    wait_for(lambda: endpoint.value("cdc_sink_lag_seconds", sink="pg") == 0, 30, "pg caught up")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(p.replica) as conn:
            conn.execute("LOCK TABLE m IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        with psycopg.connect(p.source, autocommit=True) as conn:
            conn.execute("INSERT INTO m VALUES (1000, 'late')")
        wait_for(
            lambda: endpoint.value("cdc_sink_consumer_lag_records", sink="pg") >= 1,
            30,
            "the pg sink's consumer lag in records",
        )
        lag = endpoint.value("cdc_sink_lag_seconds", sink="pg")
        assert lag > 0
        time.sleep(2.5)
        assert endpoint.value("cdc_sink_lag_seconds", sink="pg") >= lag + 2
        wait_for(  # the SQLite sink is not held back by the other's target
            lambda: endpoint.value("cdc_sink_lag_seconds", sink="lite") == 0, 30, "lite caught up"
        )
    finally:
        release.set()
        holder.join()
    wait_for(
        lambda: (
            endpoint.value("cdc_sink_lag_seconds", sink="pg") == 0
            and endpoint.value("cdc_sink_consumer_lag_records", sink="pg") == 0
        ),
        30,
        "the pg sink caught up after the lock",
    )
    assert endpoint.value("cdc_sink_records_applied_total", sink="pg", op="c") == INSERTS + 1
    assert endpoint.get("/nowhere")[0] == 404
