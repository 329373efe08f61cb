"""Source -> Kafka throughput, next to what PostgreSQL itself hands out for the same WAL.

    eval "$(scripts/devstack env)"; .venv/bin/python bench/source_throughput.py [--changes N]

Writes a workload of N row changes (default 1 000 000: 60 % inserts, 30 % updates, 10 % deletes
in transactions of 1 000 rows, a 10-column table), with two slots created before it at the same
point. Then, in this order, on the same WAL:

1. read limit: ``pg_recvlogical`` with the connector's wal2json options drains its slot to
   /dev/null up to the workload's end;
2. cdc: ``cdc run`` drains its slot into Kafka, timed from start until the slot's confirmed LSN
   reaches the workload's end (so every change is acked by Kafka); once with each producer
   client (kafka-python, confluent-kafka), each with its own slot.

Prints both rates and their ratio, and writes ``bench/results/<date>-source.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.postgres.wal2json import WAL2JSON_OPTIONS  # noqa: E402

TABLE = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    total numeric(12, 2) NOT NULL, currency char(3) NOT NULL, created_at timestamptz NOT NULL,
    updated_at timestamptz, note text, qty int, flags bool
)
"""


def lsn(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(str(row[0]))


def confirmed(conn: psycopg.Connection[tuple[object, ...]], slot: str) -> int:
    row = conn.execute(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    return int(str(row[0])) if row and row[0] is not None else 0


def workload(dsn: str, changes: int) -> int:
    inserts, updates = int(changes * 0.6), int(changes * 0.3)
    deletes = changes - inserts - updates
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):
            conn.execute(
                "INSERT INTO orders SELECT g, g %% 1000, 'new', g * 0.01, 'EUR', now(), NULL,"
                " 'order ' || g, g %% 7, g %% 2 = 0 FROM generate_series(%s::bigint, %s::bigint) g",
                (start, min(start + 999, inserts - 1)),
            )
        for start in range(0, updates, 1000):
            conn.execute(
                "UPDATE orders SET status = 'paid', updated_at = now(), total = total + 1"
                " WHERE id BETWEEN %s AND %s",
                (start, min(start + 999, updates - 1)),
            )
        for start in range(0, deletes, 1000):
            conn.execute(
                "DELETE FROM orders WHERE id BETWEEN %s AND %s",
                (inserts - deletes + start, min(inserts - deletes + start + 999, inserts - 1)),
            )
        return lsn(conn)


def measure_recvlogical(dsn: str, db: str, bindir: Path, end: int) -> float:
    """Seconds pg_recvlogical takes to drain its slot to ``end`` with the connector's options."""
    params = conninfo_to_dict(dsn)
    options = [x for k, v in WAL2JSON_OPTIONS.items() for x in ("-o", f"{k}={v}")]
    started = time.monotonic()
    subprocess.run(
        [
            str(bindir / "pg_recvlogical"),
            *("-h", str(params["host"]), "-p", str(params["port"])),
            *("-U", str(params.get("user", "postgres")), "-d", db),
            *("--slot", "bench_recv", "--start", "-E", f"{end >> 32:X}/{end & 0xFFFFFFFF:X}"),
            *options,
            *("-f", "/dev/null"),
        ],
        check=True,
    )
    return time.monotonic() - started


CLIENTS = {"kafka-python": "bench", "confluent-kafka": "benchck"}
"""Kafka client -> connector name (its slot is ``cdc_`` + name)."""


def measure_cdc(dsn: str, kafka: str, end: int, client: str) -> tuple[float, float]:
    """Seconds ``cdc run`` takes until its slot confirms ``end``, and its peak RSS in MB."""
    name = CLIENTS[client]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'[kafka]\nbootstrap_servers = "{kafka}"\n[kafka.producer]\nclient = "{client}"\n'
            f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nsnapshot = "never"\n'
        )
        started = time.monotonic()
        cdc = subprocess.Popen([str(Path(sys.executable).parent / "cdc"), "run", "-c", str(config)])
        peak_kb = 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            while confirmed(conn, f"cdc_{name}") < end:
                status = Path(f"/proc/{cdc.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
                time.sleep(0.1)
        elapsed = time.monotonic() - started
        cdc.terminate()
        cdc.wait(15)
    return elapsed, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=1_000_000)
    args = parser.parse_args()
    base = os.environ["CDC_TEST_PG_DSN"]
    kafka = os.environ["CDC_TEST_KAFKA"]
    bindir = Path(os.environ.get("CDC_DEV_PG_BIN", "/usr/lib/postgresql/15/bin"))
    db = f"bench_{int(time.time())}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    dsn = make_conninfo(base, dbname=db)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
            for slot in ("bench_recv", *(f"cdc_{n}" for n in CLIENTS.values())):
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        started = time.monotonic()
        end = workload(dsn, args.changes)
        print(f"workload: {args.changes} changes written in {time.monotonic() - started:.1f} s")

        recv_s = measure_recvlogical(dsn, db, bindir, end)
        print(f"pg_recvlogical: {recv_s:.1f} s, {args.changes / recv_s:,.0f} changes/s")
        cdc = {}
        for client in CLIENTS:
            cdc_s, peak_mb = measure_cdc(dsn, kafka, end, client)
            print(
                f"cdc -> Kafka ({client}): {cdc_s:.1f} s, {args.changes / cdc_s:,.0f} changes/s,"
                f" ratio to the read limit {recv_s / cdc_s:.2f}, peak RSS {peak_mb:.0f} MB"
            )
            cdc[client] = {
                "changes_per_s": args.changes / cdc_s,
                "ratio": recv_s / cdc_s,
                "peak_rss_mb": peak_mb,
            }
        result = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "workload": {
                "changes": args.changes,
                "mix": "60% insert, 30% update, 10% delete",
                "transaction_rows": 1000,
            },
            "read_limit_changes_per_s": args.changes / recv_s,
            "cdc": cdc,
        }
        out = ROOT / "bench" / "results" / f"{datetime.date.today()}-source.json"
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
