"""Sink apply rate from a Kafka backlog, next to a plain COPY of the same rows.

    eval "$(scripts/devstack env)"; .venv/bin/python bench/sink_apply.py [--events N]

Puts N insert events (default 1 000 000, a 10-column table) on a topic as the connector would
write them, then measures, in this order, on the same machine:

1. baseline: ``COPY ... FROM STDIN`` of the same rows into a fresh PostgreSQL table;
2. the PostgreSQL sink draining the backlog (``cdc run --sink``) until its stored offset is the
   topic's end;
3. the SQLite sink, the same way.

Prints rows/s and the ratio to COPY, and writes ``bench/results/<date>-sinks.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdc.events import Change, SourceInfo, encode  # noqa: E402

TYPES = (
    ("id", "bigint"),
    ("customer_id", "integer"),
    ("status", "text"),
    ("total", "numeric(12,2)"),
    ("currency", "character(3)"),
    ("created_at", "timestamp with time zone"),
    ("updated_at", "timestamp with time zone"),
    ("note", "text"),
    ("qty", "integer"),
    ("flags", "boolean"),
)


def row(i: int) -> dict[str, object]:
    return {
        "id": i,
        "customer_id": i % 1000,
        "status": "new",
        "total": f"{i * 0.01:.2f}",
        "currency": "EUR",
        "created_at": "2026-11-27 06:00:00.123456+00",
        "updated_at": None,
        "note": f"order {i}",
        "qty": i % 7,
        "flags": i % 2 == 0,
    }


def produce(kafka: str, topic: str, events: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=kafka, acks=1, linger_ms=50, batch_size=1 << 20, enable_idempotence=False
    )
    source = SourceInfo("bench", "bench", topic.split(".", maxsplit=1)[0])
    for i in range(events):
        change = Change(
            op="c",
            schema="public",
            table="orders",
            key={"id": i},
            before=None,
            after=row(i),
            commit_lsn=10_000 + i,
            index=0,
            lsn=10_000 + i,
            xid=1,
            commit_ts_ms=0,
            types=TYPES,
        )
        r = encode(change, source)
        producer.send(topic, key=r.key, value=r.value, headers=r.headers, partition=0)
    producer.flush()
    producer.close()


def copy_baseline(dsn: str, events: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE copy_orders (id bigint PRIMARY KEY, customer_id int, status text,"
            " total numeric(12,2), currency char(3), created_at timestamptz,"
            " updated_at timestamptz, note text, qty int, flags bool)"
        )
        started = time.monotonic()
        with conn.cursor().copy("COPY copy_orders FROM STDIN") as copy:
            for i in range(events):
                copy.write_row(tuple(row(i).values()))
        return time.monotonic() - started


def drain(config: Path, sink: str, stored: Callable[[], int], end: int) -> float:
    started = time.monotonic()
    cdc = subprocess.Popen(
        [str(Path(sys.executable).parent / "cdc"), "run", "-c", str(config), "--sink", sink]
    )
    try:
        while stored() < end:
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        cdc.terminate()
        cdc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    base, kafka = os.environ["CDC_TEST_PG_DSN"], os.environ["CDC_TEST_KAFKA"]
    stamp = int(time.time())
    topic = f"benchsink{stamp}.public.orders"
    db = f"bench_sink_{stamp}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    dsn = make_conninfo(base, dbname=db)
    try:
        started = time.monotonic()
        produce(kafka, topic, args.events)
        print(f"backlog: {args.events} events on {topic} in {time.monotonic() - started:.1f} s")
        copy_s = copy_baseline(dsn, args.events)
        print(f"COPY: {copy_s:.1f} s, {args.events / copy_s:,.0f} rows/s")
        consumer = KafkaConsumer(bootstrap_servers=kafka)
        tp = TopicPartition(topic, 0)
        end = consumer.end_offsets([tp])[tp]
        consumer.close()
        with tempfile.TemporaryDirectory() as tmp:
            lite = Path(tmp) / "bench.db"
            config = Path(tmp) / "bench.toml"
            config.write_text(
                f'[kafka]\nbootstrap_servers = "{kafka}"\n'
                f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{topic}"]\ndsn = "{dsn}"\n'
                f'group_id = "bench-{stamp}-pg"\n'
                f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{topic}"]\n'
                f'path = "{lite}"\n'
                f'group_id = "bench-{stamp}-lite"\n'
            )

            def pg_stored() -> int:
                with psycopg.connect(dsn) as conn:
                    if conn.execute("SELECT to_regclass('cdc.offsets')").fetchone() == (None,):
                        return 0
                    found = conn.execute("SELECT max(next_offset) FROM cdc.offsets").fetchone()
                return int(found[0] or 0) if found else 0

            def lite_stored() -> int:
                if not lite.exists():
                    return 0
                db_ = sqlite3.connect(lite, timeout=30)
                try:
                    found = db_.execute("SELECT max(next_offset) FROM _cdc_offsets").fetchone()
                except sqlite3.OperationalError:
                    return 0
                finally:
                    db_.close()
                return int(found[0] or 0) if found else 0

            pg_s = drain(config, "pg", pg_stored, end)
            print(
                f"PostgreSQL sink: {pg_s:.1f} s, {args.events / pg_s:,.0f} rows/s,"
                f" {copy_s / pg_s:.2f} x COPY"
            )
            lite_s = drain(config, "lite", lite_stored, end)
            print(f"SQLite sink: {lite_s:.1f} s, {args.events / lite_s:,.0f} rows/s")
        result = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "events": args.events,
            "copy_rows_per_s": args.events / copy_s,
            "postgres_sink_rows_per_s": args.events / pg_s,
            "postgres_ratio_to_copy": copy_s / pg_s,
            "sqlite_sink_rows_per_s": args.events / lite_s,
        }
        out = ROOT / "bench" / "results" / f"{datetime.date.today()}-sinks.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
