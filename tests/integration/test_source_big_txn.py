"""One huge transaction streams through in bounded memory.

Integration test. ``CDC_TEST_BIG_TXN_ROWS`` sets its size (default 200 000; ``make test-full``:
2 000 000). The connector's peak RSS (VmHWM) must stay under 300 MB.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from kafka import KafkaConsumer, TopicPartition

from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

ROWS = int(os.environ.get("CDC_TEST_BIG_TXN_ROWS", "200000"))
RSS_LIMIT_MB = 300


def test_a_huge_transaction_in_bounded_memory(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric)")
    name = f"big{unique}"
    config = write_config(tmp_path / "cdc.toml", database, kafka_bootstrap, name=name)
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 30, "the connector's slot")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO big SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, %s) g",
                (ROWS,),
            )
        end = current_wal_lsn(database)
        started = time.monotonic()
        wait_for(
            lambda: slot_confirmed_lsn(database, f"cdc_{name}") >= end,
            max(120, ROWS / 2000),
            "the transaction to be confirmed",
            interval_s=1,
        )
        elapsed = time.monotonic() - started
        peak = cdc.peak_rss_mb()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    tp = TopicPartition(f"{name}.public.big", 0)
    on_kafka = consumer.end_offsets([tp])[tp]
    consumer.close()
    print(
        f"{ROWS} rows in one transaction: {elapsed:.1f} s, {ROWS / elapsed:.0f} rows/s,"
        f" peak RSS {peak:.0f} MB, {on_kafka} records on Kafka"
    )
    assert on_kafka >= ROWS  # more only if a session restarted and re-published
    assert peak < RSS_LIMIT_MB
