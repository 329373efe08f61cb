"""Initial-snapshot throughput (source table -> Kafka), next to a plain COPY of the same table.

    eval "$(scripts/devstack env)"; .venv/bin/python bench/snapshot_throughput.py [--rows N]

Creates a table of N rows (default 1 000 000; the 10 columns of ``source_throughput``'s
``orders``), then, in this order:

1. baseline: ``COPY (SELECT * FROM orders) TO STDOUT`` read to the end by psycopg, the data
   thrown away (what PostgreSQL can hand out of that table);
2. cdc: ``cdc run`` with ``snapshot = "initial_only"``, timed from start until the process exits
   on its own, which it does only once every row is acked by Kafka; once with each producer
   client (kafka-python, confluent-kafka).

Prints both rates and their ratio and writes ``bench/results/<date>-snapshot.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
TABLE = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    total numeric(12, 2) NOT NULL, currency char(3) NOT NULL, created_at timestamptz NOT NULL,
    updated_at timestamptz, note text, qty int, flags bool
)
"""
FILL = """
INSERT INTO orders SELECT g, g %% 1000, 'new', (g %% 100000) / 100.0, 'EUR', now(), now(),
    'note ' || g, g %% 7, g %% 2 = 0 FROM generate_series(1, %s) g
"""


def copy_baseline(dsn: str) -> float:
    started = time.monotonic()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor().copy("COPY (SELECT * FROM orders) TO STDOUT") as copy,
    ):
        for _ in copy:
            pass
    return time.monotonic() - started


def measure_cdc(dsn: str, kafka: str, name: str, client: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cdc.toml"
        config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka}"\n[kafka.producer]\nclient = "{client}"\n'
            f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nsnapshot = "initial_only"\n'
        )
        started = time.monotonic()
        cdc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "cdc"), "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak_kb = 0
        while cdc.poll() is None:
            try:
                for line in Path(f"/proc/{cdc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            except FileNotFoundError:
                break
            time.sleep(0.2)
        _, err = cdc.communicate()
        elapsed = time.monotonic() - started
        if cdc.returncode != 0:
            raise SystemExit(f"cdc exited {cdc.returncode}: {err[-2000:]}")
    return elapsed, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    base = os.environ["CDC_TEST_PG_DSN"]
    kafka = os.environ["CDC_TEST_KAFKA"]
    db = f"benchsnap_{int(time.time())}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    dsn = make_conninfo(base, dbname=db)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
            conn.execute(FILL, (args.rows,))
            conn.execute("VACUUM ANALYZE orders")
        copy_s = copy_baseline(dsn)
        print(
            f"COPY (SELECT * FROM orders) TO STDOUT: {copy_s:.1f} s,"
            f" {args.rows / copy_s:,.0f} rows/s"
        )
        cdc = {}
        for n, client in enumerate(("kafka-python", "confluent-kafka")):
            cdc_s, peak_mb = measure_cdc(dsn, kafka, f"{db}_{n}", client)
            print(
                f"cdc initial snapshot -> Kafka ({client}): {cdc_s:.1f} s,"
                f" {args.rows / cdc_s:,.0f} rows/s, ratio to COPY {copy_s / cdc_s:.3f},"
                f" peak RSS {peak_mb:.0f} MB"
            )
            cdc[client] = {
                "rows_per_s": args.rows / cdc_s,
                "ratio": copy_s / cdc_s,
                "peak_rss_mb": peak_mb,
            }
        result = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "rows": args.rows,
            "copy_rows_per_s": args.rows / copy_s,
            "cdc": cdc,
        }
        out = ROOT / "bench" / "results" / f"{datetime.date.today()}-snapshot.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE database = %s",
                (db,),
            )
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
